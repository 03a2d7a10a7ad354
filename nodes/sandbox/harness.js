// Evaluated once in each fresh VM before any script. Everything it relies on
// is captured here, before the script can replace a global.
(() => {
  "use strict";
  const evaluate = eval, SyntaxErr = SyntaxError, parse = JSON.parse, stringify = JSON.stringify, Str = String, Err = Error;
  const TypeErr = TypeError, toPrim = Symbol.toPrimitive;
  const { apply, construct, get } = Reflect;
  // Captured and pinned on the patterns themselves: RegExp.prototype.test
  // looks up exec on the pattern, and a script may replace either.
  const test = RegExp.prototype.test, exec = RegExp.prototype.exec;
  const pattern = (re) => Object.defineProperty(re, "exec", { value: exec });

  // The engine reads local time through the host's time zone; scripts get
  // UTC instead, so that a script cannot learn where the server runs.
  const D = Date, P = D.prototype, UTC = D.UTC, hostParse = D.parse;
  const hostOffset = P.getTimezoneOffset, toUTC = P.toUTCString;
  const offsetMs = (t) => apply(hostOffset, new D(t), []) * 60000;
  const dateOnly = pattern(/^\s*[+-]?\d{4,6}(?:-\d\d(?:-\d\d)?)?\s*$/);
  const zoned = pattern(/(?:Z|[+-]\d\d:?\d\d|\b(?:GMT|UTC|UT|[ECMP][SD]T)\b(?:[+-]\d\d:?\d\d)?)\s*(?:\([^)]*\))?\s*$/i);
  const parseUTC = (s) => {
    s = Str(s);
    const t = hostParse(s);
    if (t !== t || apply(test, dateOnly, [s]) || apply(test, zoned, [s])) {
      return t;
    }
    const u = t - offsetMs(t);
    return u + offsetMs(u) === t ? u : t - offsetMs(u);
  };
  const primitive = (o) => {
    const tp = o[toPrim];
    if (tp != null) {
      return apply(tp, o, ["default"]);
    }
    const isPrim = (r) => r === null || (typeof r !== "object" && typeof r !== "function");
    let f = o.valueOf, r;
    if (typeof f === "function" && isPrim((r = apply(f, o, [])))) {
      return r;
    }
    f = o.toString;
    if (typeof f === "function" && isPrim((r = apply(f, o, [])))) {
      return r;
    }
    throw new TypeErr("cannot convert object to primitive value");
  };
  for (const n of ["FullYear", "Month", "Date", "Day", "Hours", "Minutes", "Seconds", "Milliseconds"]) {
    P["get" + n] = P["getUTC" + n];
    if (n !== "Day") {
      P["set" + n] = P["setUTC" + n];
    }
  }
  delete P.getYear;
  delete P.setYear;
  P.getTimezoneOffset = function getTimezoneOffset() { return 0; };
  for (const n of ["toString", "toDateString", "toTimeString", "toLocaleString", "toLocaleDateString", "toLocaleTimeString"]) {
    P[n] = toUTC;
  }
  const SafeDate = new Proxy(D, {
    apply() { return apply(toUTC, new D(), []); },
    construct(target, args, newTarget) {
      if (args.length >= 2) {
        args = [apply(UTC, undefined, args)];
      } else if (args.length === 1 && !(args[0] instanceof D)) {
        let v = args[0];
        if (v !== null && (typeof v === "object" || typeof v === "function")) {
          v = primitive(v);
        }
        args = [typeof v === "string" ? parseUTC(v) : v];
      }
      return construct(target, args, newTarget);
    },
    get(target, key, receiver) {
      return key === "parse" ? parseUTC : get(target, key, receiver);
    },
  });
  P.constructor = SafeDate;
  globalThis.Date = SafeDate;

  const outOfMemoryNull = "InternalError: out of memory (null thrown)";
  const describe = (e) => {
    // When memory is too short even for the error object, the engine throws
    // null instead; a script's own `throw null` is reported the same way.
    if (e === null) {
      return outOfMemoryNull;
    }
    try {
      return e instanceof Err ? Str(e.name) + ": " + Str(e.message) : "uncaught " + Str(e);
    } catch (_) {
      return "uncaught exception";
    }
  };
  // JSON.stringify drops functions and symbols silently; a script returning
  // one has a bug the author should see.
  const replacer = (key, v) => {
    const t = typeof v;
    if (t === "function" || t === "symbol") {
      throw new TypeErr((key === "" ? "result" : "key " + stringify(key)) + " is a " + t + ", not a JSON value");
    }
    return v;
  };

  // The first letter of the answer says how the script ended, so that no
  // value the script throws or returns can pass for another outcome.
  return (source, profile, event, context) => {
    let fn;
    try {
      fn = evaluate(source);
    } catch (e) {
      return (e instanceof SyntaxErr ? "S" : "R") + describe(e);
    }
    let result;
    try {
      result = fn(parse(profile), parse(event), parse(context));
    } catch (e) {
      return "R" + describe(e);
    }
    let out;
    try {
      out = stringify(result, replacer);
    } catch (e) {
      return "O" + describe(e);
    }
    return "V" + (out === undefined ? "null" : out);
  };
})()
