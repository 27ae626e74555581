/**
 * A restricted pickle virtual machine. It only builds data: every GLOBAL, REDUCE, BUILD, NEWOBJ and
 * persistent id is handed to the caller's hooks, which decide what (if anything) a name means. Nothing is
 * ever imported or executed. Opcodes outside the data subset (INST, OBJ, EXT*, NEWOBJ_EX, text STRING…)
 * are refused.
 */

import { WeightFormatError } from "./errors.js";

/** Python tuples and lists both become arrays; dicts become Maps (insertion-ordered, any key). */
export type PickleDict = Map<unknown, unknown>;

export interface PickleHooks {
  /** Called for GLOBAL / STACK_GLOBAL; must throw for names that are not allowed. */
  resolveGlobal(module: string, name: string): unknown;
  /** Called for BINPERSID / PERSID. */
  persistentLoad(pid: unknown): unknown;
  /** Called for REDUCE (callable(*args)) and NEWOBJ (cls.__new__(cls, *args)). */
  reduce(callable: unknown, args: unknown[], opcode: "REDUCE" | "NEWOBJ"): unknown;
  /** Called for BUILD (obj.__setstate__(state)); returns the object that replaces `target` on the stack. */
  build(target: unknown, state: unknown): unknown;
}

const OPCODE_NAMES: Readonly<Record<number, string>> = {
  105: "INST",
  111: "OBJ",
  130: "EXT1",
  131: "EXT2",
  132: "EXT4",
  146: "NEWOBJ_EX",
  83: "STRING",
  86: "UNICODE",
  151: "NEXT_BUFFER",
  152: "READONLY_BUFFER",
};

export function unpickle(data: Uint8Array, hooks: PickleHooks, name = "pickle"): unknown {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  let pos = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const fail = (message: string): never => {
    throw new WeightFormatError(`${name}: ${message}`);
  };
  const need = (n: number) => {
    if (pos + n > data.byteLength) fail(`truncated pickle (needs ${n} more bytes at offset ${pos})`);
  };
  const u8 = () => {
    need(1);
    return data[pos++];
  };
  const u16 = () => {
    need(2);
    pos += 2;
    return view.getUint16(pos - 2, true);
  };
  const u32 = () => {
    need(4);
    pos += 4;
    return view.getUint32(pos - 4, true);
  };
  const u64 = () => {
    need(8);
    const value = view.getUint32(pos + 4, true) * 4294967296 + view.getUint32(pos, true);
    pos += 8;
    if (!Number.isSafeInteger(value)) fail(`length ${value} too large at offset ${pos - 8}`);
    return value;
  };
  const take = (n: number) => {
    need(n);
    pos += n;
    return data.subarray(pos - n, pos);
  };
  const line = () => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail(`truncated pickle (unterminated line at offset ${pos})`);
    const text = new TextDecoder("latin1").decode(data.subarray(pos, end));
    pos = end + 1;
    return text;
  };
  const text = (n: number) => {
    const bytes = take(n);
    try {
      return utf8.decode(bytes);
    } catch {
      return fail(`invalid UTF-8 string at offset ${pos - n}`);
    }
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail(`stack underflow at offset ${pos - 1}`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail(`stack underflow at offset ${pos - 1}`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const previous = metastack.pop();
    if (previous === undefined) fail(`MARK missing at offset ${pos - 1}`);
    stack = previous as unknown[];
    return items;
  };
  const asDict = (value: unknown): PickleDict => {
    if (!(value instanceof Map)) fail(`SETITEM(S) on a non-dict at offset ${pos - 1}`);
    return value as PickleDict;
  };
  const asList = (value: unknown): unknown[] => {
    if (!Array.isArray(value)) fail(`APPEND(S) on a non-list at offset ${pos - 1}`);
    return value as unknown[];
  };
  const memoGet = (index: number) => {
    if (!memo.has(index)) fail(`memo key ${index} missing at offset ${pos - 1}`);
    return memo.get(index);
  };
  const signedLittleEndian = (bytes: Uint8Array): number | bigint => {
    if (bytes.length === 0) return 0;
    let value = 0n;
    for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]);
    if (bytes[bytes.length - 1] & 0x80) value -= 1n << BigInt(8 * bytes.length);
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(value)
      : value;
  };
  const textInt = (raw: string): number | bigint | boolean => {
    const s = raw.endsWith("L") ? raw.slice(0, -1) : raw;
    if (s === "00") return false;
    if (s === "01") return true;
    if (!/^[-+]?\d+$/.test(s)) fail(`bad integer literal ${JSON.stringify(raw)}`);
    const big = BigInt(s);
    return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(big)
      : big;
  };

  for (;;) {
    const at = pos;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail("pickle protocol newer than 5");
        break;
      case 0x95: // FRAME: a length prefix only, the opcodes follow inline
        u64();
        break;
      case 0x2e: // STOP
        if (metastack.length > 0) fail("STOP inside an unclosed MARK");
        return pop();
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        need(4);
        stack.push(view.getInt32(pos, true));
        pos += 4;
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(signedLittleEndian(take(u8())));
        break;
      case 0x8b: {
        // LONG4
        const n = u32();
        if (n > 1024) fail(`LONG4 of ${n} bytes is not a plausible value`);
        stack.push(signedLittleEndian(take(n)));
        break;
      }
      case 0x49: // INT (text)
        stack.push(textInt(line()));
        break;
      case 0x4c: {
        // LONG (text)
        const value = textInt(line());
        stack.push(typeof value === "boolean" ? Number(value) : value);
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x46: {
        // FLOAT (text)
        const value = Number(line());
        if (Number.isNaN(value)) fail(`bad float literal at offset ${at}`);
        stack.push(value);
        break;
      }
      case 0x58: // BINUNICODE
        stack.push(text(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(text(u64()));
        break;
      case 0x54: // BINSTRING (Python 2 str): latin-1
        stack.push(new TextDecoder("latin1").decode(take(u32())));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(new TextDecoder("latin1").decode(take(u8())));
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(take(u64()).slice());
        break;
      case 0x96: // BYTEARRAY8
        stack.push(take(u64()).slice());
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x8f: // EMPTY_SET
        stack.push([]);
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        stack.push([a, b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push([a, b, c]);
        break;
      }
      case 0x74: // TUPLE
      case 0x6c: // LIST
      case 0x91: {
        // FROZENSET
        const items = popMark(); // reassigns `stack`, so not inline in stack.push(...)
        stack.push(items);
        break;
      }
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        asList(top()).push(...items);
        break;
      }
      case 0x64: {
        // DICT
        const items = popMark();
        if (items.length % 2 !== 0) fail(`DICT with an odd number of items at offset ${at}`);
        const dict: PickleDict = new Map();
        for (let i = 0; i < items.length; i += 2) dict.set(items[i], items[i + 1]);
        stack.push(dict);
        break;
      }
      case 0x73: {
        // SETITEM
        const value = pop();
        const key = pop();
        asDict(top()).set(key, value);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        if (items.length % 2 !== 0) fail(`SETITEMS with an odd number of items at offset ${at}`);
        const dict = asDict(top());
        for (let i = 0; i < items.length; i += 2) dict.set(items[i], items[i + 1]);
        break;
      }
      case 0x61: {
        // APPEND
        const value = pop();
        asList(top()).push(value);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        asList(top()).push(...items);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x70: // PUT (text)
        memo.set(Number(textInt(line())), top());
        break;
      case 0x68: // BINGET
        stack.push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32()));
        break;
      case 0x67: // GET (text)
        stack.push(memoGet(Number(textInt(line()))));
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        stack.push(hooks.resolveGlobal(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const globalName = pop();
        const module = pop();
        if (typeof module !== "string" || typeof globalName !== "string")
          fail(`STACK_GLOBAL on non-strings at offset ${at}`);
        stack.push(hooks.resolveGlobal(module as string, globalName as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const callable = pop();
        if (!Array.isArray(args)) fail(`REDUCE arguments are not a tuple at offset ${at}`);
        stack.push(hooks.reduce(callable, args as unknown[], "REDUCE"));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        const cls = pop();
        if (!Array.isArray(args)) fail(`NEWOBJ arguments are not a tuple at offset ${at}`);
        stack.push(hooks.reduce(cls, args as unknown[], "NEWOBJ"));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const target = pop();
        stack.push(hooks.build(target, state));
        break;
      }
      case 0x51: // BINPERSID
        stack.push(hooks.persistentLoad(pop()));
        break;
      case 0x50: // PERSID (text)
        stack.push(hooks.persistentLoad(line()));
        break;
      default: {
        const known = OPCODE_NAMES[op];
        fail(
          known
            ? `pickle opcode ${known} at offset ${at} is not allowed`
            : `unknown pickle opcode 0x${op.toString(16).padStart(2, "0")} at offset ${at}`,
        );
      }
    }
  }
}
