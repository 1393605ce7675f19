/**
 * The interval tree under io_pagetable (lib/interval_tree.c semantics): random operations
 * checked against a brute-force model, including the span iterators iommufd relies on.
 */
import { describe, expect, it } from 'vitest';
import { DoubleSpanIter, IntervalTree, ItNode, SpanIter } from '../src/lib/interval-tree.js';

/** A small deterministic PRNG (mulberry32) so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Iv = { start: bigint; last: bigint };

/** Brute-force spans of `ivs` over [first, last], as interval_tree_span_iter defines them. */
function naiveSpans(ivs: Iv[], first: bigint, last: bigint): { hole: boolean; start: bigint; last: bigint }[] {
  const used = (x: bigint) => ivs.some((iv) => iv.start <= x && x <= iv.last);
  const out: { hole: boolean; start: bigint; last: bigint }[] = [];
  for (let x = first; x <= last; x++) {
    const hole = !used(x);
    const top = out[out.length - 1];
    if (top && top.hole === hole) top.last = x;
    else out.push({ hole, start: x, last: x });
  }
  return out;
}

describe('IntervalTree (lib/interval_tree.c)', () => {
  it('iter_first/iter_next find exactly the overlapping nodes, in start order, under random inserts and removes', () => {
    const r = rng(1);
    const tree = new IntervalTree<number>();
    const live: ItNode<number>[] = [];
    for (let step = 0; step < 3000; step++) {
      if (live.length && r() < 0.45) {
        const i = Math.floor(r() * live.length);
        tree.remove(live[i]);
        live.splice(i, 1);
      } else {
        const s = BigInt(Math.floor(r() * 200));
        const n = new ItNode(s, s + BigInt(Math.floor(r() * 20)), step);
        tree.insert(n);
        live.push(n);
      }
      if (step % 50 === 0) tree.check();
      const qs = BigInt(Math.floor(r() * 220));
      const ql = qs + BigInt(Math.floor(r() * 30));
      const got = [...tree.overlapping(qs, ql)].map((n) => n.value);
      const want = live
        .filter((n) => n.start <= ql && n.last >= qs)
        .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0))
        .map((n) => n.value);
      expect(got.sort()).toEqual(want.sort());
    }
    tree.check();
  });

  it('span iterator merges overlapping and adjacent nodes and alternates hole/used', () => {
    const r = rng(2);
    for (let round = 0; round < 200; round++) {
      const tree = new IntervalTree<null>();
      const ivs: Iv[] = [];
      for (let i = 0; i < 6; i++) {
        const s = BigInt(Math.floor(r() * 60));
        const iv = { start: s, last: s + BigInt(Math.floor(r() * 6)) };
        ivs.push(iv);
        tree.insert(new ItNode(iv.start, iv.last, null));
      }
      const first = BigInt(Math.floor(r() * 30));
      const last = first + BigInt(Math.floor(r() * 50));
      const got: { hole: boolean; start: bigint; last: bigint }[] = [];
      for (const it = new SpanIter(tree).first(tree, first, last); !it.done; it.next())
        got.push({ hole: it.isHole === 1, start: it.start, last: it.last });
      expect(got).toEqual(naiveSpans(ivs, first, last));
    }
  });

  it('double span iterator reports holes of the union and used spans by tree, first tree first', () => {
    const r = rng(3);
    for (let round = 0; round < 200; round++) {
      const t0 = new IntervalTree<null>();
      const t1 = new IntervalTree<null>();
      const a: Iv[] = [];
      const b: Iv[] = [];
      for (let i = 0; i < 4; i++) {
        const s = BigInt(Math.floor(r() * 60));
        const iv = { start: s, last: s + BigInt(Math.floor(r() * 6)) };
        (i % 2 ? b : a).push(iv);
        (i % 2 ? t1 : t0).insert(new ItNode(iv.start, iv.last, null));
      }
      const first = 0n;
      const last = 70n;
      const holes: Iv[] = [];
      for (const it = new DoubleSpanIter(t0, t1, first, last); !it.done; it.next()) {
        if (it.isUsed === 0) holes.push({ start: it.start, last: it.last });
        else {
          for (let x = it.start; x <= it.last; x++) {
            const inA = a.some((iv) => iv.start <= x && x <= iv.last);
            const inB = b.some((iv) => iv.start <= x && x <= iv.last);
            expect(it.isUsed === 1 ? inA : inB && !inA).toBe(true);
          }
        }
      }
      const want = naiveSpans([...a, ...b], first, last)
        .filter((s) => s.hole)
        .map((s) => ({ start: s.start, last: s.last }));
      expect(holes).toEqual(want);
    }
  });

  it('gap augmentation finds the first hole of at least a size', () => {
    const r = rng(4);
    const tree = new IntervalTree<null>({ gaps: true });
    const live: ItNode<null>[] = [];
    for (let step = 0; step < 2000; step++) {
      if (live.length && r() < 0.4) {
        const i = Math.floor(r() * live.length);
        tree.remove(live[i]);
        live.splice(i, 1);
      } else {
        const s = BigInt(Math.floor(r() * 5000));
        const len = BigInt(1 + Math.floor(r() * 10));
        if (tree.iterFirst(s, s + len - 1n)) continue;
        const n = new ItNode(s, s + len - 1n, null);
        tree.insert(n);
        live.push(n);
      }
      if (step % 100 === 0) tree.check();
      const min = BigInt(1 + Math.floor(r() * 40));
      const sorted = [...tree.nodes()];
      const want = sorted.find((n, i) => (i === 0 ? n.start : n.start - sorted[i - 1].last - 1n) >= min) ?? null;
      expect(tree.nextWithGap(null, min)).toBe(want);
    }
    tree.check();
  });
});

describe('AreaTree (the io_pagetable area B+tree)', () => {
  it('matches a brute-force model of non-overlapping intervals: lookups, neighbours, gaps, removal', async () => {
    const { AreaTree } = await import('../src/lib/area-tree.js');
    const r = rng(5);
    for (const range of [300, 20000]) {
      const tree = new AreaTree<number>();
      const live: ItNode<number>[] = [];
      for (let step = 0; step < 6000; step++) {
        if (live.length && r() < 0.45) {
          const i = Math.floor(r() * live.length);
          tree.remove(live[i]);
          live.splice(i, 1);
        } else {
          const s = BigInt(Math.floor(r() * range));
          const l = s + BigInt(Math.floor(r() * 6));
          const overlaps = live.some((n) => n.start <= l && n.last >= s);
          expect(tree.overlapsNeighbours(s, l)).toBe(overlaps);
          if (overlaps) continue;
          const n = new ItNode(s, l, step);
          tree.insert(n);
          live.push(n);
        }
        if (step % 500 === 0) tree.check();
        const sorted = [...live].sort((a, b) => (a.start < b.start ? -1 : 1));
        expect([...tree.nodes()].map((n) => n.value)).toEqual(sorted.map((n) => n.value));
        const q = BigInt(Math.floor(r() * range));
        const ql = q + BigInt(Math.floor(r() * 20));
        expect([...tree.overlapping(q, ql)].map((n) => n.value)).toEqual(
          sorted.filter((n) => n.start <= ql && n.last >= q).map((n) => n.value),
        );
        const min = BigInt(1 + Math.floor(r() * 30));
        const want = sorted.find((n, i) => (i === 0 ? n.start : n.start - sorted[i - 1].last - 1n) >= min) ?? null;
        expect(tree.nextWithGap(null, min)).toBe(want);
        if (sorted.length > 2) {
          const from = sorted[Math.floor(r() * sorted.length)];
          const idx = sorted.indexOf(from);
          const want2 =
            sorted.slice(idx + 1).find((n) => n.start - sorted[sorted.indexOf(n) - 1].last - 1n >= min) ?? null;
          expect(tree.nextWithGap(from, min)).toBe(want2);
          expect(tree.prev(from)).toBe(sorted[idx - 1] ?? null);
          expect(tree.next(from)).toBe(sorted[idx + 1] ?? null);
        }
      }
      tree.check();
      for (const n of live) tree.remove(n);
      tree.check();
      expect(tree.isEmpty()).toBe(true);
    }
  });

  it('is exact for 64-bit keys above 2^53', async () => {
    const { AreaTree } = await import('../src/lib/area-tree.js');
    const tree = new AreaTree<number>();
    const top = 0xffff_ffff_ffff_f000n;
    const a = new ItNode(top, top + 1n, 1);
    const b = new ItNode(top + 2n, top + 3n, 2);
    const c = new ItNode(top - 3n, top - 2n, 3);
    tree.insert(a);
    tree.insert(b);
    tree.insert(c);
    tree.check();
    expect([...tree.nodes()].map((n) => n.value)).toEqual([3, 1, 2]);
    expect(tree.iterFirst(top + 2n, top + 2n)).toBe(b);
    expect(tree.overlapsNeighbours(top - 1n, top - 1n)).toBe(false);
    expect(tree.overlapsNeighbours(top + 1n, top + 1n)).toBe(true);
  });
});
