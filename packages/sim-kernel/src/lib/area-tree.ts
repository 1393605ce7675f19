import { ItNode, type IntervalIndex } from './interval-tree.js';

/**
 * An ordered set of non-overlapping intervals, as a B+tree: the io_pagetable's area tree.
 * It answers the same queries as {@link IntervalTree} (iter_first/iter_next, neighbours,
 * the first hole of a size) but keeps up to 32 keys per node in flat arrays, so a lookup
 * among 100k areas touches a handful of cache lines instead of a pointer chase through 17
 * tree levels. Keys are kept as doubles in plain arrays (V8 stores them unboxed in the
 * elements backing store), compared exactly below 2^53, with the BigInt bounds as
 * tie-breakers above.
 */

const B = 32;
const EXACT = 2 ** 53;

/** A fixed-size array of doubles (a plain array: its doubles sit inside the elements store). */
function doubles(): number[] {
  return new Array<number>(B).fill(0.5).fill(0);
}

/** Array.prototype.copyWithin for the first `n` entries. */
function shiftRight(a: unknown[], from: number, n: number): void {
  for (let i = n; i > from; i--) a[i] = a[i - 1];
}
function shiftLeft(a: unknown[], at: number, n: number): void {
  for (let i = at; i < n - 1; i++) a[i] = a[i + 1];
}

class Leaf<T> {
  n = 0;
  readonly starts = doubles();
  readonly lasts = doubles();
  /** The hole in front of each entry (see IntervalTree's gap trees). */
  readonly gaps = doubles();
  readonly items: (ItNode<T> | null)[] = new Array(B).fill(null);
  parent: Inner<T> | null = null;
  prevLeaf: Leaf<T> | null = null;
  nextLeaf: Leaf<T> | null = null;
  maxGap = 0;
}

class Inner<T> {
  n = 0;
  /** The smallest start of each child's subtree. */
  readonly starts = doubles();
  readonly maxGaps = doubles();
  readonly children: (Leaf<T> | Inner<T> | null)[] = new Array(B).fill(null);
  parent: Inner<T> | null = null;
}

type BNode<T> = Leaf<T> | Inner<T>;

/** `a < b` where a is (aN, a) and b is an item's start. */
function startBefore<T>(aN: number, a: bigint, bN: number, item: ItNode<T>): boolean {
  return aN < bN || (aN === bN && aN >= EXACT && a < item.start);
}

/** A B+tree of non-overlapping intervals; see the module comment. */
export class AreaTree<T> implements IntervalIndex<T> {
  private root: BNode<T> = new Leaf<T>();
  size = 0;
  private version = 0;
  private probeVersion = -1;
  private probeStart = 0n;
  private probeLeaf: Leaf<T> | null = null;
  private probePos = 0;
  /** The neighbours a node inserted at the probed start would have. */
  probePrev: ItNode<T> | null = null;
  probeNext: ItNode<T> | null = null;

  isEmpty(): boolean {
    return this.size === 0;
  }

  /** The leaf and position where `start` goes (after equal starts, as rbtree insertion does). */
  probe(start: bigint): void {
    const sN = Number(start);
    let node: BNode<T> = this.root;
    while (node instanceof Inner) {
      // The last child whose smallest start is <= start (child 0 if none).
      let lo = 1;
      let hi = node.n - 1;
      let c = 0;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const k = node.starts[mid];
        // The child's first item (a walk down the subtree) is only needed for a tie above 2^53.
        if (sN < k || (sN === k && sN >= EXACT && start < firstItem(node.children[mid]!).start)) hi = mid - 1;
        else {
          c = mid;
          lo = mid + 1;
        }
      }
      node = node.children[c]!;
    }
    const leaf = node;
    let lo = 0;
    let hi = leaf.n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const k = leaf.starts[mid];
      if (sN < k || (sN === k && sN >= EXACT && start < leaf.items[mid]!.start)) hi = mid;
      else lo = mid + 1;
    }
    this.probeVersion = this.version;
    this.probeStart = start;
    this.probeLeaf = leaf;
    this.probePos = lo;
    this.probePrev = lo > 0 ? leaf.items[lo - 1] : lastOfLeaf(leaf.prevLeaf);
    this.probeNext = lo < leaf.n ? leaf.items[lo] : firstOfLeaf(leaf.nextLeaf);
  }

  /** Whether [start, last] intersects an interval; prepares insert() at `start`. */
  overlapsNeighbours(start: bigint, last: bigint): boolean {
    this.probe(start);
    const leaf = this.probeLeaf!;
    const pos = this.probePos;
    const sN = Number(start);
    const lN = Number(last);
    // Compare with the keys kept in the leaf; the BigInts only break ties above 2^53.
    if (pos > 0) {
      const pl = leaf.lasts[pos - 1];
      if (sN < pl || (sN === pl && (sN < EXACT || start <= leaf.items[pos - 1]!.last))) return true;
    } else if (this.probePrev !== null && this.probePrev.last >= start) return true;
    if (pos < leaf.n) {
      const ns = leaf.starts[pos];
      return ns < lN || (ns === lN && (ns < EXACT || leaf.items[pos]!.start <= last));
    }
    return this.probeNext !== null && this.probeNext.start <= last;
  }

  /** interval_tree_iter_first(): the first interval overlapping [start, last]. */
  iterFirst(start: bigint, last: bigint): ItNode<T> | null {
    if (this.size === 0) return null;
    this.probe(start);
    const p = this.probePrev;
    if (p !== null && p.last >= start) return p;
    const n = this.probeNext;
    return n !== null && n.start <= last ? n : null;
  }

  /** interval_tree_iter_next(). */
  iterNext(node: ItNode<T>, _start: bigint, last: bigint): ItNode<T> | null {
    const n = this.next(node);
    return n !== null && n.start <= last ? n : null;
  }

  *overlapping(start: bigint, last: bigint): IterableIterator<ItNode<T>> {
    for (let n = this.iterFirst(start, last); n !== null; n = this.iterNext(n, start, last)) yield n;
  }

  *nodes(): IterableIterator<ItNode<T>> {
    for (let n = this.first(); n !== null; n = this.next(n)) yield n;
  }

  first(): ItNode<T> | null {
    let node: BNode<T> = this.root;
    while (node instanceof Inner) node = node.children[0]!;
    return node.n ? node.items[0] : null;
  }

  lastNode(): ItNode<T> | null {
    let node: BNode<T> = this.root;
    while (node instanceof Inner) node = node.children[node.n - 1]!;
    return node.n ? node.items[node.n - 1] : null;
  }

  /** The position of a linked node in its leaf. */
  private indexOf(node: ItNode<T>): { leaf: Leaf<T>; i: number } {
    const leaf = node.owner as Leaf<T>;
    const sN = node.startN;
    let lo = 0;
    let hi = leaf.n - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const it = leaf.items[mid]!;
      if (it === node) return { leaf, i: mid };
      if (startBefore(sN, node.start, leaf.starts[mid], it)) hi = mid - 1;
      else lo = mid + 1;
    }
    for (let i = 0; i < leaf.n; i++) if (leaf.items[i] === node) return { leaf, i };
    throw new Error('area tree: node not in its leaf');
  }

  next(node: ItNode<T>): ItNode<T> | null {
    const { leaf, i } = this.indexOf(node);
    return i + 1 < leaf.n ? leaf.items[i + 1] : firstOfLeaf(leaf.nextLeaf);
  }

  prev(node: ItNode<T>): ItNode<T> | null {
    const { leaf, i } = this.indexOf(node);
    return i > 0 ? leaf.items[i - 1] : lastOfLeaf(leaf.prevLeaf);
  }

  private gapOf(n: ItNode<T>, prev: ItNode<T> | null): number {
    if (prev === null) return n.startN;
    if (n.startN < EXACT) return n.startN - prev.lastN - 1;
    return Number(n.start - prev.last - 1n);
  }

  /** Sets a node's gap and refreshes the maxima above it. */
  private setGap(node: ItNode<T>, gap: number): void {
    const { leaf, i } = this.indexOf(node);
    leaf.gaps[i] = gap;
    this.refreshLeaf(leaf);
  }

  /** Recomputes a leaf's max gap and start key and propagates them up. */
  private refreshLeaf(leaf: Leaf<T>): void {
    let g = 0;
    for (let i = 0; i < leaf.n; i++) if (leaf.gaps[i] > g) g = leaf.gaps[i];
    leaf.maxGap = g;
    let child: BNode<T> = leaf;
    let parent = leaf.parent;
    while (parent !== null) {
      const c = parent.children.indexOf(child);
      const mg = child instanceof Leaf ? child.maxGap : maxOf(child.maxGaps, child.n);
      const st = child instanceof Leaf ? (child.n ? child.starts[0] : 0) : child.starts[0];
      if (parent.maxGaps[c] === mg && parent.starts[c] === st) return;
      parent.maxGaps[c] = mg;
      parent.starts[c] = st;
      child = parent;
      parent = parent.parent;
    }
  }

  /** interval_tree_insert() of a node that overlaps nothing. */
  insert(node: ItNode<T>): void {
    if (node.linked) throw new Error('area tree: node already linked');
    node.startN = Number(node.start);
    node.lastN = Number(node.last);
    if (!(this.probeVersion === this.version && this.probeStart === node.start)) this.probe(node.start);
    const leaf = this.probeLeaf!;
    const pos = this.probePos;
    const prev = this.probePrev;
    const next = this.probeNext;
    this.version++;
    node.linked = true;
    this.size++;
    const gap = this.gapOf(node, prev);
    if (leaf.n < B) {
      this.leafInsert(leaf, pos, node, gap);
    } else {
      const right = this.splitLeaf(leaf);
      if (pos <= leaf.n) this.leafInsert(leaf, pos, node, gap);
      else this.leafInsert(right, pos - leaf.n, node, gap);
      this.refreshLeaf(right);
    }
    const owner = node.owner as Leaf<T>;
    if (next === null) this.refreshLeaf(owner);
    else if (next.owner === owner) {
      // The common case: the successor shares the leaf, so one refresh covers both gaps.
      owner.gaps[owner.items.indexOf(next, 1)] = this.gapOf(next, node);
      this.refreshLeaf(owner);
    } else {
      this.refreshLeaf(owner);
      this.setGap(next, this.gapOf(next, node));
    }
  }

  private leafInsert(leaf: Leaf<T>, pos: number, node: ItNode<T>, gap: number): void {
    shiftRight(leaf.starts, pos, leaf.n);
    shiftRight(leaf.lasts, pos, leaf.n);
    shiftRight(leaf.gaps, pos, leaf.n);
    shiftRight(leaf.items, pos, leaf.n);
    leaf.starts[pos] = node.startN;
    leaf.lasts[pos] = node.lastN;
    leaf.gaps[pos] = gap;
    leaf.items[pos] = node;
    leaf.n++;
    node.owner = leaf;
  }

  /** Moves the upper half of a full leaf to a new right sibling. */
  private splitLeaf(leaf: Leaf<T>): Leaf<T> {
    const right = new Leaf<T>();
    const half = B >> 1;
    const m = leaf.n - half;
    for (let i = 0; i < m; i++) {
      right.starts[i] = leaf.starts[half + i];
      right.lasts[i] = leaf.lasts[half + i];
      right.gaps[i] = leaf.gaps[half + i];
      const it = leaf.items[half + i]!;
      right.items[i] = it;
      it.owner = right;
      leaf.items[half + i] = null;
    }
    right.n = m;
    leaf.n = half;
    right.nextLeaf = leaf.nextLeaf;
    if (right.nextLeaf) right.nextLeaf.prevLeaf = right;
    right.prevLeaf = leaf;
    leaf.nextLeaf = right;
    this.addChild(leaf, right);
    this.refreshLeaf(leaf);
    return right;
  }

  /** Inserts `right` after `left` in their parent, splitting upwards as needed. */
  private addChild(left: BNode<T>, right: BNode<T>): void {
    let parent = left.parent;
    if (parent === null) {
      parent = new Inner<T>();
      parent.children[0] = left;
      parent.n = 1;
      left.parent = parent;
      this.setChildKeys(parent, 0);
      this.root = parent;
    }
    const c = parent.children.indexOf(left);
    if (parent.n === B) {
      const sibling = this.splitInner(parent);
      if (c < parent.n) this.innerInsert(parent, c + 1, right);
      else this.innerInsert(sibling, c + 1 - parent.n, right);
      return;
    }
    this.innerInsert(parent, c + 1, right);
  }

  private innerInsert(p: Inner<T>, pos: number, child: BNode<T>): void {
    shiftRight(p.starts, pos, p.n);
    shiftRight(p.maxGaps, pos, p.n);
    shiftRight(p.children, pos, p.n);
    p.children[pos] = child;
    p.n++;
    child.parent = p;
    this.setChildKeys(p, pos);
  }

  private setChildKeys(p: Inner<T>, i: number): void {
    const child = p.children[i]!;
    p.starts[i] = child instanceof Leaf ? (child.n ? child.starts[0] : 0) : child.starts[0];
    p.maxGaps[i] = child instanceof Leaf ? child.maxGap : maxOf(child.maxGaps, child.n);
  }

  private splitInner(node: Inner<T>): Inner<T> {
    const right = new Inner<T>();
    const half = B >> 1;
    const m = node.n - half;
    for (let i = 0; i < m; i++) {
      right.starts[i] = node.starts[half + i];
      right.maxGaps[i] = node.maxGaps[half + i];
      const ch = node.children[half + i]!;
      right.children[i] = ch;
      ch.parent = right;
      node.children[half + i] = null;
    }
    right.n = m;
    node.n = half;
    this.addChild(node, right);
    return right;
  }

  /** interval_tree_remove(). */
  remove(node: ItNode<T>): void {
    if (!node.linked) throw new Error('area tree: node not linked');
    const { leaf, i } = this.indexOf(node);
    const prev = i > 0 ? leaf.items[i - 1] : lastOfLeaf(leaf.prevLeaf);
    const next = i + 1 < leaf.n ? leaf.items[i + 1] : firstOfLeaf(leaf.nextLeaf);
    this.version++;
    shiftLeft(leaf.starts, i, leaf.n);
    shiftLeft(leaf.lasts, i, leaf.n);
    shiftLeft(leaf.gaps, i, leaf.n);
    shiftLeft(leaf.items, i, leaf.n);
    leaf.n--;
    leaf.items[leaf.n] = null;
    node.linked = false;
    node.owner = null;
    this.size--;
    if (leaf.n === 0 && leaf !== this.root) this.removeEmptyLeaf(leaf);
    else if (next !== null && next.owner === leaf) {
      // The successor moved into slot i of the same leaf: one refresh covers both changes.
      leaf.gaps[i] = this.gapOf(next, prev);
      this.refreshLeaf(leaf);
      return;
    } else this.refreshLeaf(leaf);
    if (next !== null) this.setGap(next, this.gapOf(next, prev));
  }

  private removeEmptyLeaf(leaf: Leaf<T>): void {
    if (leaf.prevLeaf) leaf.prevLeaf.nextLeaf = leaf.nextLeaf;
    if (leaf.nextLeaf) leaf.nextLeaf.prevLeaf = leaf.prevLeaf;
    let child: BNode<T> = leaf;
    let parent = leaf.parent!;
    for (;;) {
      const c = parent.children.indexOf(child);
      shiftLeft(parent.starts, c, parent.n);
      shiftLeft(parent.maxGaps, c, parent.n);
      shiftLeft(parent.children, c, parent.n);
      parent.n--;
      parent.children[parent.n] = null;
      if (parent.n > 0 || parent.parent === null) break;
      child = parent;
      parent = parent.parent;
    }
    // The subtree minima and maxima above the removal point.
    for (let p: Inner<T> = parent; p.parent !== null; p = p.parent)
      this.setChildKeys(p.parent, p.parent.children.indexOf(p));
    // Collapse a root with a single child; an empty root becomes an empty leaf.
    while (this.root instanceof Inner && this.root.n === 1) {
      const only: BNode<T> = this.root.children[0]!;
      only.parent = null;
      this.root = only;
    }
    if (this.root instanceof Inner && this.root.n === 0) this.root = new Leaf<T>();
  }

  /** The first node after `from` (or the first node) whose gap is at least `minGap`. */
  nextWithGap(from: ItNode<T> | null, minGapIn: bigint): ItNode<T> | null {
    const minGap = Number(minGapIn);
    let leaf: Leaf<T>;
    let i: number;
    if (from === null) {
      let node: BNode<T> = this.root;
      while (node instanceof Inner) node = node.children[0]!;
      leaf = node;
      i = 0;
    } else {
      ({ leaf, i } = this.indexOf(from));
      i++;
    }
    for (; i < leaf.n; i++) if (leaf.gaps[i] >= minGap) return leaf.items[i];
    // Climb until an ancestor has a later child with a large enough gap, then descend.
    let child: BNode<T> = leaf;
    let parent = leaf.parent;
    while (parent !== null) {
      const c = parent.children.indexOf(child);
      for (let k = c + 1; k < parent.n; k++) {
        if (parent.maxGaps[k] >= minGap) return this.leftmostWithGap(parent.children[k]!, minGap);
      }
      child = parent;
      parent = parent.parent;
    }
    return null;
  }

  private leftmostWithGap(start: BNode<T>, minGap: number): ItNode<T> | null {
    let node: BNode<T> = start;
    while (node instanceof Inner) {
      let k = 0;
      while (k < node.n && node.maxGaps[k] < minGap) k++;
      if (k === node.n) return null;
      node = node.children[k]!;
    }
    for (let i = 0; i < node.n; i++) if (node.gaps[i] >= minGap) return node.items[i];
    return null;
  }

  /** Checks the structure: order, no overlap, keys, gaps, maxima, links, size. */
  check(): void {
    let count = 0;
    let prev: ItNode<T> | null = null;
    let prevLeaf: Leaf<T> | null = null;
    const walk = (node: BNode<T>, parent: Inner<T> | null): { start: number; maxGap: number } => {
      if (node.parent !== parent) throw new Error('area tree: bad parent');
      if (node instanceof Leaf) {
        if (node !== this.root && node.n === 0) throw new Error('area tree: empty leaf');
        if (node.prevLeaf !== prevLeaf) throw new Error('area tree: bad leaf links');
        prevLeaf = node;
        let mg = 0;
        for (let i = 0; i < node.n; i++) {
          const it: ItNode<T> = node.items[i]!;
          if (it.owner !== node || !it.linked) throw new Error('area tree: bad owner');
          if (node.starts[i] !== Number(it.start) || node.lasts[i] !== Number(it.last))
            throw new Error('area tree: stale key');
          if (prev !== null && it.start <= prev.last) throw new Error('area tree: overlap or order');
          const want = Number(prev === null ? it.start : it.start - prev.last - 1n);
          if (node.gaps[i] !== want) throw new Error(`area tree: stale gap ${node.gaps[i]} != ${want}`);
          if (node.gaps[i] > mg) mg = node.gaps[i];
          prev = it;
          count++;
        }
        if (mg !== node.maxGap) throw new Error('area tree: stale leaf max gap');
        return { start: node.n ? node.starts[0] : 0, maxGap: mg };
      }
      if (node.n === 0) throw new Error('area tree: empty inner node');
      let mg = 0;
      let first = 0;
      for (let i = 0; i < node.n; i++) {
        const r = walk(node.children[i]!, node);
        if (node.starts[i] !== r.start || node.maxGaps[i] !== r.maxGap) throw new Error('area tree: stale inner keys');
        if (i === 0) first = r.start;
        if (r.maxGap > mg) mg = r.maxGap;
      }
      return { start: first, maxGap: mg };
    };
    walk(this.root, null);
    if (prevLeaf !== null && (prevLeaf as Leaf<T>).nextLeaf !== null) throw new Error('area tree: bad last leaf link');
    if (count !== this.size) throw new Error(`area tree: size ${this.size} but ${count} nodes`);
  }
}

function firstItem<T>(node: BNode<T>): ItNode<T> {
  let n: BNode<T> = node;
  while (n instanceof Inner) n = n.children[0]!;
  return n.items[0]!;
}

function firstOfLeaf<T>(leaf: Leaf<T> | null): ItNode<T> | null {
  return leaf !== null && leaf.n ? leaf.items[0] : null;
}

function lastOfLeaf<T>(leaf: Leaf<T> | null): ItNode<T> | null {
  return leaf !== null && leaf.n ? leaf.items[leaf.n - 1] : null;
}

function maxOf(a: number[], n: number): number {
  let m = 0;
  for (let i = 0; i < n; i++) if (a[i] > m) m = a[i];
  return m;
}
