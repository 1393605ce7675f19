/**
 * Property tests for every StructCodec of every entry on every ABI module, against the
 * independent model in ir-model.ts (IR records, IR layout groups, ABI byte order).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StructCodec } from '@vfio-ts/uapi/runtime';
import { ABIS, ABI_FACTS, AbiModel, ENTRIES, loadAbiModule, loadIr, type AbiName, type Entry } from './ir-model.js';

/** Runs per property and codec (2,480 codecs, four properties each). */
const RUNS = Number(process.env.UAPI_FC_RUNS ?? 25);

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

interface Loaded {
  entry: Entry;
  abi: AbiName;
  mod: Record<string, unknown>;
}

const loaded: Loaded[] = await Promise.all(
  ENTRIES.flatMap((entry) => ABIS.map(async (abi) => ({ entry, abi, mod: await loadAbiModule(entry, abi) }))),
);

const codecsOf = (mod: Record<string, unknown>): [string, StructCodec<any>][] =>
  Object.entries(mod).filter((e): e is [string, StructCodec<any>] => e[1] instanceof StructCodec);

for (const { entry, abi, mod } of loaded) {
  const ir = loadIr(entry);
  const model = new AbiModel(ir, abi);

  describe(`${entry}/${abi}`, () => {
    it('exports exactly one StructCodec per IR record, laid out as the IR says', () => {
      expect(mod.ABI).toBe(abi);
      expect(mod.StructCodec).toBe(StructCodec);
      const codecs = codecsOf(mod);
      expect(codecs.length).toBe(ir.records.length);
      expect(codecs.map(([name]) => name).sort()).toEqual(ir.records.map((r) => r.tsName!).sort());
      for (const r of ir.records) {
        const codec = mod[r.tsName!] as StructCodec<unknown>;
        const rl = model.group.records[r.name];
        expect(codec.name).toBe(r.name);
        expect(codec.size, r.name).toBe(rl.size);
        expect(codec.align, r.name).toBe(rl.align);
        expect(codec.littleEndian, r.name).toBe(ABI_FACTS[abi].littleEndian);
        expect(codec.sizePrefix, r.name).toBe(r.sizePrefix);
        expect(codec.offsets, r.name).toEqual(Object.fromEntries(rl.members.map((m) => [m.path, m.offset])));
        const flex = model.flexOf(r);
        if (flex) {
          const esz = model.elementSize(flex.type.of);
          const t = flex.type.of;
          const bytes = t.kind === 'scalar' && ['u8', 's8', 'char'].includes(t.prim);
          expect(codec.flex, r.name).toEqual({
            name: flex.name,
            offset: model.flexOffset(r),
            elementSize: esz,
            bytes,
            ...(flex.countedBy ? { countedBy: flex.countedBy } : {}),
          });
        } else expect(codec.flex, r.name).toBeUndefined();
      }
    });

    for (const r of ir.records) {
      const name = r.tsName!;
      it(`${name}: decode/encode round trips, padding, IR offsets and byte order`, () => {
        const codec = mod[name] as StructCodec<any>;
        expect(codec).toBeInstanceOf(StructCodec);
        const size = model.size(r.name);
        const flex = model.flexOf(r);
        const esz = flex ? model.elementSize(flex.type.of) : 0;
        const covered = model.covered(r.name);
        const keys = model
          .decodedKeys(r)
          .filter((k) => !flex || k !== flex.name || flex.countedBy || esz === 1)
          .sort();

        // (a) bytes -> decode -> encode -> decode is stable; (c) padding encodes as 0 and every
        // member byte of the fixed part is reproduced (a bool as 0 or 1).
        fc.assert(
          fc.property(
            fc.uint8Array({ minLength: size, maxLength: size + 4 * esz }),
            fc.uint8Array({ maxLength: 16 }),
            (bytes, before) => {
              const d1 = codec.decode(bytes);
              expect(Object.keys(d1).sort()).toEqual(keys);
              const again = codec.encode(d1);
              expect(again.length).toBeGreaterThanOrEqual(size);
              expect(codec.decode(again)).toEqual(d1);
              for (let i = 0; i < size; i++) {
                const want = covered[i] === 0 ? 0 : covered[i] === 2 ? Number(bytes[i] !== 0) : bytes[i];
                if (again[i] !== want)
                  throw new Error(
                    `byte ${i} (${covered[i] ? 'member' : 'padding'}) re-encoded as ${again[i]}, expected ${want}`,
                  );
              }
              // The same struct after unrelated bytes decodes the same at its offset.
              const shifted = new Uint8Array(before.length + bytes.length);
              shifted.set(before);
              shifted.set(bytes, before.length);
              expect(codec.decode(shifted, before.length)).toEqual(d1);
            },
          ),
          { numRuns: RUNS },
        );

        // (b) value -> encode -> decode gives the value back; (d) the bytes are exactly the
        // members at the IR offsets in the ABI's byte order (and nothing outside the struct).
        fc.assert(
          fc.property(
            fc.oneof(model.valueArb(r.name, false), model.valueArb(r.name, true)),
            fc.nat(24),
            (value, at) => {
              const want = model.encode(r.name, value);
              expect(codec.encodedLength(value)).toBe(want.length);
              const got = codec.encode(value);
              expect(hex(got)).toBe(hex(want));
              expect(model.mismatches(r, codec.decode(got), value)).toEqual([]);

              const target = new Uint8Array(at + want.length + 8).fill(0xa5);
              expect(codec.encode(value, target, at)).toBe(target);
              expect(hex(target.subarray(at, at + want.length))).toBe(hex(want));
              expect(target.subarray(0, at).every((b) => b === 0xa5)).toBe(true);
              expect(target.subarray(at + want.length).every((b) => b === 0xa5)).toBe(true);
            },
          ),
          { numRuns: RUNS },
        );
      });
    }
  });
}
