// as-redact: a tunnel plugin in AssemblyScript. It masks every run of at
// least min_digits ASCII digits (card numbers, account numbers) in what the
// server sends to the client, keeping its length: "card 4111111111111111."
// reaches the client as "card ################.". A run split across
// chunks is found too: up to min_digits-1 digits at the end of a chunk are
// kept in the guest's memory (per connection) until the next chunk decides.
// When a connection closes, the plugin logs how many runs it masked.
//
// Config: {"min_digits": 13, "mask": "#"} (both optional; these are the
// defaults). Build: make (see Makefile).
import {
  ACTION_DROP, ACTION_FORWARD, DIR_SERVER_TO_CLIENT, LOG_INFO, OK, REJECT,
  configError, configText, input_buffer, logText, send,
} from "./tunnel";

const CAP: i32 = 16 << 10; // the input buffer
const MAX_DIGITS: i32 = 64;

const input: usize = memory.data(CAP);
// out is a chunk after masking, with the digits kept from the last one.
const out: usize = memory.data(CAP + MAX_DIGITS);

let minDigits: i32 = 13;
let mask: u8 = 0x23; // '#'

/** The state of a connection whose server sent digits. */
class Conn {
  kept: StaticArray<u8> = new StaticArray<u8>(MAX_DIGITS);
  nkept: i32 = 0; // digits of a run shorter than minDigits so far
  masking: bool = false; // in a run already masked
  runs: i32 = 0; // runs masked
}

const conns = new Map<i64, Conn>();

export function tunnel_abi_version(): i32 {
  return 1;
}

export function tunnel_init(): i32 {
  const err = parseConfig(configText());
  if (err.length > 0) {
    configError("as-redact: " + err);
    return REJECT;
  }
  input_buffer(input, CAP);
  return OK;
}

@inline function isDigit(c: u8): bool {
  return c >= 0x30 && c <= 0x39;
}

export function tunnel_on_data(conn: i64, dir: i32, len: i32, end: i32): i32 {
  if (dir != DIR_SERVER_TO_CLIENT) return ACTION_FORWARD;
  let c = conns.has(conn) ? conns.get(conn) : null;
  if (c === null) {
    // The fast path: nothing kept and no run of minDigits in the chunk.
    if (!mayMask(len, end)) return ACTION_FORWARD;
    c = new Conn();
    conns.set(conn, c);
  }
  const n = maskChunk(c, len);
  if (end && c.nkept > 0) {
    memory.copy(out + n, changetype<usize>(c.kept), c.nkept);
    send(dir, out, n + c.nkept);
    c.nkept = 0;
  } else if (n > 0) {
    send(dir, out, n);
  }
  return ACTION_DROP;
}

/** Whether a chunk, with nothing kept before it, needs maskChunk. */
function mayMask(len: i32, end: i32): bool {
  let run = 0;
  for (let i = 0; i < len; i++) {
    if (isDigit(load<u8>(input + i))) {
      if (++run >= minDigits) return true;
    } else {
      run = 0;
    }
  }
  return run > 0 && !end; // digits at the end: the next chunk may extend them
}

/** Writes the chunk at out with its runs masked; returns its length. */
function maskChunk(c: Conn, len: i32): i32 {
  const kept = changetype<usize>(c.kept);
  let n = 0;
  for (let i = 0; i < len; i++) {
    const b = load<u8>(input + i);
    if (!isDigit(b)) {
      if (c.nkept > 0) {
        memory.copy(out + n, kept, c.nkept);
        n += c.nkept;
        c.nkept = 0;
      }
      c.masking = false;
      store<u8>(out + n++, b);
    } else if (c.masking) {
      store<u8>(out + n++, mask);
    } else if (c.nkept + 1 < minDigits) {
      store<u8>(kept + c.nkept++, b);
    } else {
      memory.fill(out + n, mask, minDigits);
      n += minDigits;
      c.nkept = 0;
      c.masking = true;
      c.runs++;
    }
  }
  return n;
}

export function tunnel_on_close(conn: i64): void {
  if (!conns.has(conn)) return;
  const runs = conns.get(conn).runs;
  conns.delete(conn);
  if (runs > 0) {
    logText(LOG_INFO, "as-redact: masked " + runs.toString() + (runs == 1 ? " run" : " runs") + " of digits");
  }
}

// parseConfig reads the flat JSON object of the config into minDigits and
// mask; it returns what is wrong, or "".
function parseConfig(s: string): string {
  const p = new Parser(s);
  if (p.eof()) return "";
  if (!p.eat(0x7b)) return "the config must be a JSON object"; // {
  if (p.eat(0x7d)) return p.eof() ? "" : "text after the object"; // }
  do {
    const key = p.str();
    if (key === null || !p.eat(0x3a)) return "the config must be a JSON object"; // :
    if (key == "min_digits") {
      const v = p.int();
      if (v < 4 || v > MAX_DIGITS) return "\"min_digits\": a whole number from 4 to 64";
      minDigits = v;
    } else if (key == "mask") {
      const v = p.str();
      if (v === null || v.length != 1 || v.charCodeAt(0) < 0x20 || v.charCodeAt(0) > 0x7e || isDigit(<u8>v.charCodeAt(0))) {
        return "\"mask\": one printable ASCII character, not a digit";
      }
      mask = <u8>v.charCodeAt(0);
    } else {
      return "unknown key \"" + key + "\" (known: min_digits, mask)";
    }
  } while (p.eat(0x2c)); // ,
  if (!p.eat(0x7d) || !p.eof()) return "the config must be a JSON object";
  return "";
}

/** Parser reads the few JSON tokens parseConfig needs. */
class Parser {
  i: i32 = 0;
  constructor(public s: string) {}

  skip(): void {
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.i++;
    }
  }

  eof(): bool {
    this.skip();
    return this.i >= this.s.length;
  }

  eat(c: i32): bool {
    this.skip();
    if (this.i < this.s.length && this.s.charCodeAt(this.i) == c) {
      this.i++;
      return true;
    }
    return false;
  }

  /** A string without escapes other than \" and \\, or null. */
  str(): string | null {
    if (!this.eat(0x22)) return null;
    let v = "";
    while (this.i < this.s.length) {
      let c = this.s.charCodeAt(this.i++);
      if (c == 0x22) return v;
      if (c == 0x5c) {
        if (this.i >= this.s.length) return null;
        c = this.s.charCodeAt(this.i++);
        if (c != 0x22 && c != 0x5c) return null;
      }
      v += String.fromCharCode(c);
    }
    return null;
  }

  /** A whole number of at most 4 digits, or -1. */
  int(): i32 {
    this.skip();
    let v = 0;
    let n = 0;
    while (this.i < this.s.length && n < 5) {
      const c = this.s.charCodeAt(this.i);
      if (c < 0x30 || c > 0x39) break;
      v = v * 10 + (c - 0x30);
      this.i++;
      n++;
    }
    return n == 0 || n > 4 ? -1 : v;
  }
}
