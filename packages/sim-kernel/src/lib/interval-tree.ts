/**
 * An augmented interval tree with the semantics of Linux's `lib/interval_tree.c`
 * (`interval_tree_insert/remove/iter_first/iter_next`) and of the span iterators
 * (`interval_tree_span_iter_*`, and iommufd's `interval_tree_double_span_iter_*` from
 * drivers/iommu/iommufd/double_span.h).
 *
 * Intervals are closed, `[start, last]`, with 64-bit `bigint` bounds so the full
 * `unsigned long` IOVA space (0 .. ULONG_MAX) is exact. Nodes are ordered by `start` (equal
 * starts go right, as the kernel's rbtree insert does) and the tree is an AVL tree with
 * parent pointers; every node keeps the largest `last` of its subtree, which makes an
 * overlap query O(log n + k).
 *
 * A tree built with `{ gaps: true }` additionally keeps, for a tree of non-overlapping
 * intervals, the size of the hole in front of every node and the largest such hole in each
 * subtree. `firstFit()` uses it to find the first hole that can hold a block in O(log n)
 * per candidate, where iterating holes one by one (what iopt_alloc_iova() does) is O(n).
 */

/** ULONG_MAX on the 64-bit ABIs the simulator models. */
export const ULONG_MAX = 0xffff_ffff_ffff_ffffn;

/** A node of an {@link IntervalTree}: an interval `[start, last]` carrying `value`. */
export class ItNode<T> {
  left: ItNode<T> | null = null;
  right: ItNode<T> | null = null;
  parent: ItNode<T> | null = null;
  /** Whether the node is linked into a tree (RB_EMPTY_NODE() is its negation). */
  linked = false;
  height = 1;
  /** The largest `last` in this node's subtree (`__subtree_last`). */
  subtreeLast: bigint;
  /**
   * `start`, `last` and `subtreeLast` as three small integers each (bits 60..63, 30..59,
   * 0..29): V8 keeps small integers inside the object, so comparing keys touches nothing but
   * the node (BigInts and doubles are separate heap objects). Set when the node is inserted.
   */
  s2 = 0;
  s1 = 0;
  s0 = 0;
  l2 = 0;
  l1 = 0;
  l0 = 0;
  t2 = 0;
  t1 = 0;
  t0 = 0;
  /** The container the node sits in (the leaf of an {@link AreaTree}). */
  owner: unknown = null;
  /** `start` and `last` as doubles, for {@link AreaTree}. */
  startN = 0;
  lastN = 0;
  /**
   * Gap trees only: the number of free indexes between the previous node and this one, as
   * a double (rounded when above 2^53; rounding is monotonic, so pruning on it never skips
   * a hole that is large enough).
   */
  gap = 0;
  /** Gap trees only: the largest `gap` in this node's subtree. */
  maxGap = 0;

  constructor(
    /** First index of the interval; change it only while the node is not linked. */
    public start: bigint,
    /** Last index of the interval (inclusive); change it only while the node is not linked. */
    public last: bigint,
    public value: T,
  ) {
    this.subtreeLast = last;
  }
}

const M30 = 0x3fffffffn;
const P30 = 2 ** 30;
const EXACT = 2 ** 53;
/** The limbs of the last key split by split(). */
let K2 = 0;
let K1 = 0;
let K0 = 0;

/** Splits a 64-bit key into K2 (bits 60..63), K1 (bits 30..59) and K0 (bits 0..29). */
function split(x: bigint): void {
  const n = Number(x);
  if (n < EXACT) {
    K2 = 0;
    K1 = Math.floor(n / P30);
    K0 = n - K1 * P30;
  } else {
    K2 = Number(x >> 60n);
    K1 = Number((x >> 30n) & M30);
    K0 = Number(x & M30);
  }
}

/** `a < b` on split keys. */
function lt(a2: number, a1: number, a0: number, b2: number, b1: number, b0: number): boolean {
  return a2 < b2 || (a2 === b2 && (a1 < b1 || (a1 === b1 && a0 < b0)));
}

/** `a <= b` on split keys. */
function le(a2: number, a1: number, a0: number, b2: number, b1: number, b0: number): boolean {
  return a2 < b2 || (a2 === b2 && (a1 < b1 || (a1 === b1 && a0 <= b0)));
}

/** What the span iterators need of a tree: interval_tree_iter_first/next. */
export interface IntervalIndex<T> {
  iterFirst(start: bigint, last: bigint): ItNode<T> | null;
  iterNext(node: ItNode<T>, start: bigint, last: bigint): ItNode<T> | null;
}

function height<T>(n: ItNode<T> | null): number {
  return n === null ? 0 : n.height;
}

/** `rb_root_cached` with interval augmentation; see the module comment. */
export class IntervalTree<T> implements IntervalIndex<T> {
  root: ItNode<T> | null = null;
  size = 0;
  private readonly gaps: boolean;
  /** Bumped by every insert and remove, so a remembered insertion point can be trusted. */
  private version = 0;
  private probeVersion = -1;
  private probeStart = 0n;
  private probeParent: ItNode<T> | null = null;
  private probeLeft = false;
  /** The neighbours a node inserted at the probed start would have. */
  probePrev: ItNode<T> | null = null;
  probeNext: ItNode<T> | null = null;

  constructor(options: { gaps?: boolean } = {}) {
    this.gaps = options.gaps ?? false;
  }

  /** RB_EMPTY_ROOT(). */
  isEmpty(): boolean {
    return this.root === null;
  }

  private pull(n: ItNode<T>): void {
    const l = n.left;
    const r = n.right;
    const hl = l === null ? 0 : l.height;
    const hr = r === null ? 0 : r.height;
    n.height = (hl > hr ? hl : hr) + 1;
    let sl = n.last;
    let t2 = n.l2;
    let t1 = n.l1;
    let t0 = n.l0;
    if (l !== null && lt(t2, t1, t0, l.t2, l.t1, l.t0)) {
      sl = l.subtreeLast;
      t2 = l.t2;
      t1 = l.t1;
      t0 = l.t0;
    }
    if (r !== null && lt(t2, t1, t0, r.t2, r.t1, r.t0)) {
      sl = r.subtreeLast;
      t2 = r.t2;
      t1 = r.t1;
      t0 = r.t0;
    }
    n.subtreeLast = sl;
    n.t2 = t2;
    n.t1 = t1;
    n.t0 = t0;
    if (this.gaps) {
      let g = n.gap;
      if (l !== null && l.maxGap > g) g = l.maxGap;
      if (r !== null && r.maxGap > g) g = r.maxGap;
      n.maxGap = g;
    }
  }

  /** The hole in front of `n` given its predecessor (gap trees). */
  private gapOf(n: ItNode<T>, prev: ItNode<T> | null): number {
    if (prev === null) return Number(n.start);
    if (n.s2 === 0 && prev.l2 === 0) {
      const g = (n.s1 - prev.l1) * P30 + (n.s0 - prev.l0) - 1;
      if (g < EXACT) return g;
    }
    return Number(n.start - prev.last - 1n);
  }

  private replaceChild(parent: ItNode<T> | null, old: ItNode<T>, node: ItNode<T> | null): void {
    if (parent === null) this.root = node;
    else if (parent.left === old) parent.left = node;
    else parent.right = node;
  }

  private rotateLeft(x: ItNode<T>): ItNode<T> {
    const y = x.right!;
    x.right = y.left;
    if (y.left !== null) y.left.parent = x;
    y.parent = x.parent;
    this.replaceChild(x.parent, x, y);
    y.left = x;
    x.parent = y;
    this.pull(x);
    this.pull(y);
    return y;
  }

  private rotateRight(x: ItNode<T>): ItNode<T> {
    const y = x.left!;
    x.left = y.right;
    if (y.right !== null) y.right.parent = x;
    y.parent = x.parent;
    this.replaceChild(x.parent, x, y);
    y.right = x;
    x.parent = y;
    this.pull(x);
    this.pull(y);
    return y;
  }

  /**
   * Recomputes augmentation and restores the AVL balance from `start` upwards. It stops at
   * the first node whose height and augmented values did not change (and that needed no
   * rotation): its ancestors only depend on those.
   */
  private fixUp(start: ItNode<T> | null): void {
    let n = start;
    while (n !== null) {
      const h = n.height;
      const sl = n.subtreeLast;
      const mg = n.maxGap;
      this.pull(n);
      const bf = height(n.left) - height(n.right);
      if (bf > 1) {
        const l = n.left!;
        if (height(l.left) < height(l.right)) this.rotateLeft(l);
        n = this.rotateRight(n);
      } else if (bf < -1) {
        const r = n.right!;
        if (height(r.right) < height(r.left)) this.rotateRight(r);
        n = this.rotateLeft(n);
      } else if (n.height === h && n.subtreeLast === sl && n.maxGap === mg) {
        return;
      }
      n = n.parent;
    }
  }

  /** Recomputes augmentation from `start` upwards, until a node does not change. */
  private pullPath(start: ItNode<T> | null): void {
    for (let n = start; n !== null; n = n.parent) {
      const sl = n.subtreeLast;
      const mg = n.maxGap;
      this.pull(n);
      if (n !== start && n.subtreeLast === sl && n.maxGap === mg) return;
    }
  }

  /** interval_tree_insert(). */
  insert(node: ItNode<T>): void {
    if (node.linked) throw new Error('interval tree: node already linked');
    node.left = node.right = null;
    node.height = 1;
    node.subtreeLast = node.last;
    split(node.last);
    node.l2 = node.t2 = K2;
    node.l1 = node.t1 = K1;
    node.l0 = node.t0 = K0;
    split(node.start);
    node.s2 = K2;
    node.s1 = K1;
    node.s0 = K0;
    const start = node.start;
    let parent: ItNode<T> | null;
    let goLeft: boolean;
    let prev: ItNode<T> | null;
    let next: ItNode<T> | null;
    if (this.probeVersion === this.version && this.probeStart === start) {
      parent = this.probeParent;
      goLeft = this.probeLeft;
      prev = this.probePrev;
      next = this.probeNext;
    } else {
      this.probe(start);
      parent = this.probeParent;
      goLeft = this.probeLeft;
      prev = this.probePrev;
      next = this.probeNext;
    }
    this.version++;
    node.parent = parent;
    if (parent === null) this.root = node;
    else if (goLeft) parent.left = node;
    else parent.right = node;
    node.linked = true;
    this.size++;
    if (this.gaps) {
      node.gap = this.gapOf(node, prev);
      node.maxGap = node.gap;
      if (next !== null) next.gap = this.gapOf(next, node);
    }
    // The leaf's own values are final; its parent is the first that can change.
    this.fixUp(parent);
    if (next !== null && this.gaps) this.pullPath(next);
  }

  /**
   * Finds where a node starting at `start` would be inserted, and its neighbours
   * (`probePrev`, `probeNext`). A following insert() of that start reuses the position.
   * For a tree of non-overlapping intervals the neighbours tell whether [start, last]
   * would overlap anything (see overlapsNeighbours()).
   */
  probe(start: bigint): void {
    split(start);
    const a2 = K2;
    const a1 = K1;
    const a0 = K0;
    let parent: ItNode<T> | null = null;
    let cur = this.root;
    let goLeft = false;
    // A new leaf's neighbours are the last ancestors where the descent went right (prev)
    // and left (next); equal starts go right, as rbtree insertion does.
    let prev: ItNode<T> | null = null;
    let next: ItNode<T> | null = null;
    while (cur !== null) {
      parent = cur;
      goLeft = lt(a2, a1, a0, cur.s2, cur.s1, cur.s0);
      if (goLeft) {
        next = cur;
        cur = cur.left;
      } else {
        prev = cur;
        cur = cur.right;
      }
    }
    this.probeVersion = this.version;
    this.probeStart = start;
    this.probeParent = parent;
    this.probeLeft = goLeft;
    this.probePrev = prev;
    this.probeNext = next;
  }

  /**
   * For trees of non-overlapping intervals: whether [start, last] intersects a node, in
   * one descent that also prepares insert() at `start`.
   */
  overlapsNeighbours(start: bigint, last: bigint): boolean {
    this.probe(start);
    const p = this.probePrev;
    if (p !== null) {
      split(start);
      if (le(K2, K1, K0, p.l2, p.l1, p.l0)) return true;
    }
    const n = this.probeNext;
    if (n !== null) {
      split(last);
      if (le(n.s2, n.s1, n.s0, K2, K1, K0)) return true;
    }
    return false;
  }

  /** interval_tree_remove(). */
  remove(node: ItNode<T>): void {
    if (!node.linked) throw new Error('interval tree: node not linked');
    this.version++;
    let prev: ItNode<T> | null = null;
    let next: ItNode<T> | null = null;
    if (this.gaps) {
      prev = this.prev(node);
      next = this.next(node);
    }
    let swapped: ItNode<T> | null = null;
    if (node.left !== null && node.right !== null) {
      // Swap the node with its successor so that it has at most one child. The successor
      // takes over the node's augmented values, which its new ancestors were computed from.
      let s = node.right;
      while (s.left !== null) s = s.left;
      this.swapWithSuccessor(node, s);
      s.subtreeLast = node.subtreeLast;
      s.t2 = node.t2;
      s.t1 = node.t1;
      s.t0 = node.t0;
      s.maxGap = node.maxGap;
      swapped = s;
    }
    const child = node.left ?? node.right;
    const parent = node.parent;
    this.replaceChild(parent, node, child);
    if (child !== null) child.parent = parent;
    node.left = node.right = node.parent = null;
    node.linked = false;
    node.height = 1;
    this.size--;
    if (next !== null) next.gap = this.gapOf(next, prev);
    this.fixUp(parent);
    if (swapped !== null) this.pullPath(swapped);
    if (next !== null && next !== swapped) this.pullPath(next);
  }

  private swapWithSuccessor(n: ItNode<T>, s: ItNode<T>): void {
    const np = n.parent;
    const nl = n.left!;
    const nr = n.right!;
    const nh = n.height;
    const sp = s.parent!;
    const sr = s.right;
    const sh = s.height;
    this.replaceChild(np, n, s);
    s.parent = np;
    s.left = nl;
    nl.parent = s;
    s.height = nh;
    if (sp === n) {
      s.right = n;
      n.parent = s;
    } else {
      s.right = nr;
      nr.parent = s;
      sp.left = n;
      n.parent = sp;
    }
    n.left = null;
    n.right = sr;
    if (sr !== null) sr.parent = n;
    n.height = sh;
  }

  /** The node with the smallest start. */
  first(): ItNode<T> | null {
    let n = this.root;
    if (n === null) return null;
    while (n.left !== null) n = n.left;
    return n;
  }

  /** The node with the largest start. */
  lastNode(): ItNode<T> | null {
    let n = this.root;
    if (n === null) return null;
    while (n.right !== null) n = n.right;
    return n;
  }

  /** In-order successor (rb_next). */
  next(node: ItNode<T>): ItNode<T> | null {
    let n = node.right;
    if (n !== null) {
      while (n.left !== null) n = n.left;
      return n;
    }
    let c = node;
    let p = node.parent;
    while (p !== null && p.right === c) {
      c = p;
      p = p.parent;
    }
    return p;
  }

  /** In-order predecessor (rb_prev). */
  prev(node: ItNode<T>): ItNode<T> | null {
    let n = node.left;
    if (n !== null) {
      while (n.right !== null) n = n.right;
      return n;
    }
    let c = node;
    let p = node.parent;
    while (p !== null && p.left === c) {
      c = p;
      p = p.parent;
    }
    return p;
  }

  /** interval_tree_subtree_search(): the leftmost node of the subtree overlapping [start, last]. */
  private subtreeSearch(
    node: ItNode<T>,
    a2: number,
    a1: number,
    a0: number,
    b2: number,
    b1: number,
    b0: number,
  ): ItNode<T> | null {
    let n: ItNode<T> | null = node;
    for (;;) {
      const l: ItNode<T> | null = n.left;
      if (l !== null && le(a2, a1, a0, l.t2, l.t1, l.t0)) {
        n = l;
        continue;
      }
      if (le(n.s2, n.s1, n.s0, b2, b1, b0)) {
        if (le(a2, a1, a0, n.l2, n.l1, n.l0)) return n;
        n = n.right;
        if (n !== null && le(a2, a1, a0, n.t2, n.t1, n.t0)) continue;
      }
      return null;
    }
  }

  /** interval_tree_iter_first(): the first node (by start) overlapping [start, last]. */
  iterFirst(start: bigint, last: bigint): ItNode<T> | null {
    const root = this.root;
    if (root === null) return null;
    split(start);
    const a2 = K2;
    const a1 = K1;
    const a0 = K0;
    if (lt(root.t2, root.t1, root.t0, a2, a1, a0)) return null;
    split(last);
    return this.subtreeSearch(root, a2, a1, a0, K2, K1, K0);
  }

  /** interval_tree_iter_next(): the next node after `node` overlapping [start, last]. */
  iterNext(node: ItNode<T>, start: bigint, last: bigint): ItNode<T> | null {
    split(start);
    const a2 = K2;
    const a1 = K1;
    const a0 = K0;
    split(last);
    const b2 = K2;
    const b1 = K1;
    const b0 = K0;
    let n = node;
    let rb = n.right;
    for (;;) {
      if (rb !== null && le(a2, a1, a0, rb.t2, rb.t1, rb.t0)) return this.subtreeSearch(rb, a2, a1, a0, b2, b1, b0);
      let prev: ItNode<T>;
      do {
        const p = n.parent;
        if (p === null) return null;
        prev = n;
        n = p;
        rb = n.right;
      } while (prev === rb);
      if (lt(b2, b1, b0, n.s2, n.s1, n.s0)) return null;
      if (le(a2, a1, a0, n.l2, n.l1, n.l0)) return n;
    }
  }

  /** Every value overlapping [start, last] in start order. */
  *overlapping(start: bigint, last: bigint): IterableIterator<ItNode<T>> {
    for (let n = this.iterFirst(start, last); n !== null; n = this.iterNext(n, start, last)) yield n;
  }

  /** Every node in start order. */
  *nodes(): IterableIterator<ItNode<T>> {
    for (let n = this.first(); n !== null; n = this.next(n)) yield n;
  }

  /**
   * Gap trees only: the first node after `from` (or from the smallest node when `from` is
   * null) whose `gap` is at least `minGap`, in start order.
   */
  nextWithGap(from: ItNode<T> | null, minGapIn: bigint): ItNode<T> | null {
    const minGap = Number(minGapIn);
    if (from === null) {
      const root = this.root;
      return root !== null && root.maxGap >= minGap ? this.leftmostWithGap(root, minGap) : null;
    }
    let n = from;
    if (n.right !== null && n.right.maxGap >= minGap) return this.leftmostWithGap(n.right, minGap);
    for (;;) {
      const p = n.parent;
      if (p === null) return null;
      if (p.left === n) {
        if (p.gap >= minGap) return p;
        if (p.right !== null && p.right.maxGap >= minGap) return this.leftmostWithGap(p.right, minGap);
      }
      n = p;
    }
  }

  private leftmostWithGap(node: ItNode<T>, minGap: number): ItNode<T> {
    let n = node;
    for (;;) {
      if (n.left !== null && n.left.maxGap >= minGap) n = n.left;
      else if (n.gap >= minGap) return n;
      else n = n.right!;
    }
  }

  /** Checks every structural and augmentation invariant (for tests and fuzzing). */
  check(): void {
    let count = 0;
    let prev: ItNode<T> | null = null;
    const walk = (n: ItNode<T> | null, parent: ItNode<T> | null): number => {
      if (n === null) return 0;
      if (n.parent !== parent) throw new Error('interval tree: bad parent pointer');
      if (!n.linked) throw new Error('interval tree: unlinked node in tree');
      const hl = walk(n.left, n);
      count++;
      if (prev !== null && n.start < prev.start) throw new Error('interval tree: order violated');
      if (this.gaps) {
        const want = Number(prev === null ? n.start : n.start - prev.last - 1n);
        if (n.gap !== want) throw new Error(`interval tree: stale gap ${n.gap} != ${want}`);
      }
      split(n.start);
      if (n.s2 !== K2 || n.s1 !== K1 || n.s0 !== K0) throw new Error('interval tree: stale start limbs');
      split(n.last);
      if (n.l2 !== K2 || n.l1 !== K1 || n.l0 !== K0) throw new Error('interval tree: stale last limbs');
      prev = n;
      const hr = walk(n.right, n);
      if (Math.abs(hl - hr) > 1) throw new Error('interval tree: unbalanced');
      if (n.height !== Math.max(hl, hr) + 1) throw new Error('interval tree: bad height');
      let sl = n.last;
      if (n.left && n.left.subtreeLast > sl) sl = n.left.subtreeLast;
      if (n.right && n.right.subtreeLast > sl) sl = n.right.subtreeLast;
      split(sl);
      if (sl !== n.subtreeLast || n.t2 !== K2 || n.t1 !== K1 || n.t0 !== K0)
        throw new Error('interval tree: stale subtree_last');
      if (this.gaps) {
        let g = n.gap;
        if (n.left && n.left.maxGap > g) g = n.left.maxGap;
        if (n.right && n.right.maxGap > g) g = n.right.maxGap;
        if (g !== n.maxGap) throw new Error('interval tree: stale max gap');
      }
      return n.height;
    };
    walk(this.root, null);
    if (count !== this.size) throw new Error(`interval tree: size ${this.size} but ${count} nodes`);
  }
}

/**
 * struct interval_tree_span_iter: walks [firstIndex, lastIndex] as alternating holes (no
 * node intersects) and used spans (fully covered by nodes, consecutive and adjacent nodes
 * merged). `isHole` is 1 for a hole, 0 for a used span, -1 when done; `start`/`last` are
 * the kernel's `start_hole/start_used` and `last_hole/last_used` unions.
 */
export class SpanIter<T> {
  private nodes0: ItNode<T> | null = null;
  private nodes1: ItNode<T> | null = null;
  firstIndex = 0n;
  lastIndex = 0n;
  start = 0n;
  last = 0n;
  isHole = -1;

  constructor(private tree: IntervalIndex<T>) {}

  /** interval_tree_span_iter_first(). */
  first(tree: IntervalIndex<T>, firstIndex: bigint, lastIndex: bigint): this {
    this.tree = tree;
    this.firstIndex = firstIndex;
    this.lastIndex = lastIndex;
    this.nodes0 = null;
    this.nodes1 = tree.iterFirst(firstIndex, lastIndex);
    if (this.nodes1 === null) {
      this.start = firstIndex;
      this.last = lastIndex;
      this.isHole = 1;
      return this;
    }
    if (this.nodes1.start > firstIndex) {
      this.start = firstIndex;
      this.last = this.nodes1.start - 1n;
      this.isHole = 1;
      this.nextGap();
      return this;
    }
    this.start = firstIndex;
    this.isHole = 0;
    this.nextGap();
    this.last = this.nodes0!.last;
    if (this.last >= lastIndex) {
      this.last = lastIndex;
      this.nodes0 = null;
      this.nodes1 = null;
    }
    return this;
  }

  private nextGap(): void {
    let cur = this.nodes1;
    this.nodes0 = cur;
    do {
      if (cur!.last > this.nodes0!.last) this.nodes0 = cur;
      cur = this.tree.iterNext(cur!, this.firstIndex, this.lastIndex);
    } while (cur !== null && (this.nodes0!.last >= cur.start || this.nodes0!.last + 1n === cur.start));
    this.nodes1 = cur;
  }

  /** interval_tree_span_iter_done(). */
  get done(): boolean {
    return this.isHole === -1;
  }

  /** interval_tree_span_iter_next(). */
  next(): void {
    if (this.nodes0 === null && this.nodes1 === null) {
      this.isHole = -1;
      return;
    }
    if (this.isHole) {
      this.start = this.last + 1n;
      this.last = this.nodes0!.last;
      if (this.last >= this.lastIndex) {
        this.last = this.lastIndex;
        this.nodes0 = null;
        this.nodes1 = null;
      }
      this.isHole = 0;
      return;
    }
    if (this.nodes1 === null) {
      this.start = this.nodes0!.last + 1n;
      this.last = this.lastIndex;
      this.nodes0 = null;
      this.isHole = 1;
      return;
    }
    this.start = this.nodes0!.last + 1n;
    this.last = this.nodes1.start - 1n;
    this.isHole = 1;
    this.nextGap();
  }

  /** interval_tree_span_iter_advance(). */
  advance(tree: IntervalIndex<T>, newIndex: bigint): void {
    if (this.isHole === -1) return;
    this.firstIndex = newIndex;
    if (newIndex > this.lastIndex) {
      this.isHole = -1;
      return;
    }
    if (this.start <= newIndex && newIndex <= this.last) {
      this.start = newIndex;
      return;
    }
    if (newIndex === this.last + 1n) this.next();
    else this.first(tree, newIndex, this.lastIndex);
  }
}

/**
 * struct interval_tree_double_span_iter (iommufd's double_span.h): spans over the union of
 * two trees. `isUsed` is 0 for a hole, 1 or 2 for a span used by the first or second tree
 * (the first takes priority), -1 when done.
 */
export class DoubleSpanIter<A, B> {
  private readonly spans0: SpanIter<A>;
  private readonly spans1: SpanIter<B>;
  start = 0n;
  last = 0n;
  isUsed = -1;

  constructor(
    private readonly tree0: IntervalIndex<A>,
    private readonly tree1: IntervalIndex<B>,
    firstIndex: bigint,
    lastIndex: bigint,
  ) {
    this.spans0 = new SpanIter(tree0).first(tree0, firstIndex, lastIndex);
    this.spans1 = new SpanIter(tree1).first(tree1, firstIndex, lastIndex);
    this.update();
  }

  /** interval_tree_double_span_iter_update(). */
  private update(): void {
    let lastHole = ULONG_MAX;
    const spans: (SpanIter<A> | SpanIter<B>)[] = [this.spans0, this.spans1];
    for (let i = 0; i !== 2; i++) {
      const s = spans[i];
      if (s.done) {
        this.isUsed = -1;
        return;
      }
      if (s.isHole) {
        if (s.last < lastHole) lastHole = s.last;
        continue;
      }
      this.isUsed = i + 1;
      this.start = s.start;
      this.last = s.last < lastHole ? s.last : lastHole;
      return;
    }
    this.isUsed = 0;
    this.start = this.spans0.start;
    this.last = this.spans0.last < this.spans1.last ? this.spans0.last : this.spans1.last;
  }

  get done(): boolean {
    return this.isUsed === -1;
  }

  /** interval_tree_double_span_iter_next(). */
  next(): void {
    if (this.isUsed === -1 || this.last === this.spans0.lastIndex) {
      this.isUsed = -1;
      return;
    }
    this.spans0.advance(this.tree0, this.last + 1n);
    this.spans1.advance(this.tree1, this.last + 1n);
    this.update();
  }
}
