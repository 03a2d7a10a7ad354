package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var testLimits = Limits{Timeout: time.Second, MemoryBytes: 16 << 20}

func run(t *testing.T, code string, in Input, lim Limits) (Result, error) {
	t.Helper()
	return Run(context.Background(), code, in, lim)
}

func mustRun(t *testing.T, code string, in Input) Result {
	t.Helper()
	res, err := run(t, code, in, testLimits)
	if err != nil {
		t.Fatalf("Run(%q): %v", code, err)
	}
	return res
}

func wantKind(t *testing.T, err error, kind string) *Error {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("error = %v (%T), want *Error of kind %q", err, err, kind)
	}
	if se.Kind != kind {
		t.Fatalf("kind = %q (%s), want %q", se.Kind, se.Message, kind)
	}
	return se
}

func TestValuesInOut(t *testing.T) {
	in := Input{
		Profile: map[string]any{"plan": "pro", "age": 41.0, "tags": []any{"vip", "beta"}},
		Event:   map[string]any{"type": "purchase", "amount": 12.5},
		Context: map[string]any{"visits": 3.0, "nested": map[string]any{"ok": true}},
	}
	tests := []struct {
		code string
		want any
	}{
		{`return profile.plan + ":" + event.type`, "pro:purchase"},
		{`return profile.age + event.amount + context.visits`, 56.5},
		{`return profile.tags.length === 2 && context.nested.ok`, true},
		{`return null`, nil},
		{`return`, nil},
		{`return [1, "a", false, null, {x: [2]}]`, []any{1.0, "a", false, nil, map[string]any{"x": []any{2.0}}}},
		{`return {total: event.amount * 2, plan: profile.plan}`, map[string]any{"total": 25.0, "plan": "pro"}},
		{`return {branch: 7}`, map[string]any{"branch": 7.0}},
		{`return 1 / 3`, 1.0 / 3},
		{`return "héllo ☃ 😀"`, "héllo ☃ 😀"},
	}
	for _, tt := range tests {
		res := mustRun(t, tt.code, in)
		if !reflect.DeepEqual(res.Value, tt.want) {
			t.Errorf("Run(%q).Value = %#v, want %#v", tt.code, res.Value, tt.want)
		}
		if res.Branch != "" || res.Context != nil {
			t.Errorf("Run(%q) = %+v, want only a value", tt.code, res)
		}
	}
}

func TestNilInputsAreEmptyObjects(t *testing.T) {
	res := mustRun(t, `return [typeof profile, Object.keys(event).length, context.missing === undefined]`, Input{})
	if want := []any{"object", 0.0, true}; !reflect.DeepEqual(res.Value, want) {
		t.Fatalf("Value = %#v, want %#v", res.Value, want)
	}
}

func TestBranchAndContext(t *testing.T) {
	in := Input{Profile: map[string]any{"score": 80.0}, Context: map[string]any{"n": 1.0}}
	res := mustRun(t, `
		const high = profile.score > 50;
		return {branch: high ? "high" : "low", context: {n: context.n + 1, high}, value: "scored"};`, in)
	want := Result{Value: "scored", Context: map[string]any{"n": 2.0, "high": true}, Branch: "high"}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("Result = %#v, want %#v", res, want)
	}

	res = mustRun(t, `return {branch: "only"}`, in)
	if !reflect.DeepEqual(res, Result{Branch: "only"}) {
		t.Fatalf("branch only: %#v", res)
	}
	res = mustRun(t, `return {context: {a: [1]}, branch: null}`, in)
	if !reflect.DeepEqual(res, Result{Context: map[string]any{"a": []any{1.0}}}) {
		t.Fatalf("context only: %#v", res)
	}
	if in.Context["n"] != 1.0 {
		t.Fatalf("script changed the caller's context: %v", in.Context)
	}
}

func TestMalformedControlObject(t *testing.T) {
	for _, code := range []string{
		`return {branch: 1, context: {}}`,
		`return {branch: "a", context: [1]}`,
		`return {branch: "a", context: "x"}`,
	} {
		_, err := run(t, code, Input{}, testLimits)
		wantKind(t, err, KindOutput)
	}
}

func TestThrownError(t *testing.T) {
	tests := []struct{ code, msg string }{
		{`throw new Error("boom")`, "Error: boom"},
		{`throw new RangeError("bad " + profile.x)`, "RangeError: bad 1"},
		{`null.x`, "TypeError: cannot read property 'x' of null"},
		{`throw "plain"`, "uncaught plain"},
		{`throw Object.create(null)`, "uncaught exception"},
		{`throw undefined`, "uncaught undefined"},
		{`undefinedFunction()`, "ReferenceError: 'undefinedFunction' is not defined"},
	}
	for _, tt := range tests {
		_, err := run(t, tt.code, Input{Profile: map[string]any{"x": 1}}, testLimits)
		se := wantKind(t, err, KindRuntime)
		if se.Message != tt.msg {
			t.Errorf("Run(%q) message = %q, want %q", tt.code, se.Message, tt.msg)
		}
	}
}

func TestSyntaxError(t *testing.T) {
	for _, code := range []string{`return {`, `let = ;`, `return 1 +`, `}) + (`} {
		_, err := run(t, code, Input{}, testLimits)
		se := wantKind(t, err, KindSyntax)
		if !strings.HasPrefix(se.Message, "SyntaxError:") {
			t.Errorf("Run(%q) message = %q", code, se.Message)
		}
		wantKind(t, Check(code), KindSyntax)
	}
}

func TestCheckDoesNotRun(t *testing.T) {
	for _, code := range []string{
		`while (true) {}`, `throw new Error("x")`, `return {branch: "a"}`, `return profile.x.y.z`,
		"}\n+(() => { while (true) {} })() + function () {",
	} {
		if err := Check(code); err != nil {
			t.Errorf("Check(%q) = %v", code, err)
		}
	}
}

func TestOutputErrors(t *testing.T) {
	for _, code := range []string{
		`return function () {}`,
		`return {f: () => 1}`,
		`return [Symbol("s")]`,
		`const o = {}; o.self = o; return o`,
		`return 10n`,
		`return {toJSON() { throw new Error("no") }}`,
	} {
		_, err := run(t, code, Input{}, testLimits)
		wantKind(t, err, KindOutput)
	}
}

func TestInfiniteLoopStoppedByTimeout(t *testing.T) {
	lim := Limits{Timeout: 50 * time.Millisecond, MemoryBytes: 4 << 20}
	for _, code := range []string{
		`while (true) {}`,
		`for (;;) { try { while (true) {} } catch (e) {} finally { continue } }`,
		`const s = []; for (;;) { s.push(1); s.pop() }`,
	} {
		start := time.Now()
		_, err := run(t, code, Input{}, lim)
		wantKind(t, err, KindTimeout)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Run(%q) took %v with a %v timeout", code, d, lim.Timeout)
		}
	}
	if res := mustRun(t, `return 1 + 1`, Input{}); res.Value != 2.0 {
		t.Fatalf("after runaways: %v", res.Value)
	}
}

func TestMemoryLimit(t *testing.T) {
	lim := Limits{Timeout: 5 * time.Second, MemoryBytes: 2 << 20}
	for _, code := range []string{
		`const a = []; for (;;) a.push({i: a.length, s: "x" + a.length})`,
		`let s = "xy"; for (;;) s = (s + s).split("").join("")`,
		`const b = []; for (;;) b.push(new ArrayBuffer(1 << 16))`,
		`function f(n) { return f(n + 1) + 1 } return f(0)`,
		`return new Array(1e7).fill(0)`,
	} {
		_, err := run(t, code, Input{}, lim)
		wantKind(t, err, KindMemory)
	}
}

// The limit is a byte count the engine's allocator enforces, not a guess:
// one buffer just under it fits and one just over it does not.
func TestMemoryLimitIsExact(t *testing.T) {
	const mb = 1 << 20
	lim := Limits{Timeout: time.Second, MemoryBytes: 4 * mb}
	if _, err := run(t, `return new ArrayBuffer(3 * 1048576).byteLength`, Input{}, lim); err != nil {
		t.Fatalf("3 MiB under a 4 MiB limit: %v", err)
	}
	_, err := run(t, `return new ArrayBuffer(4 * 1048576).byteLength`, Input{}, lim)
	wantKind(t, err, KindMemory)
	if _, err := run(t, `return new ArrayBuffer(4 * 1048576).byteLength`, Input{}, Limits{Timeout: time.Second, MemoryBytes: 5 * mb}); err != nil {
		t.Fatalf("4 MiB under a 5 MiB limit: %v", err)
	}
}

func TestCaughtOutOfMemoryLeavesScriptRunning(t *testing.T) {
	res, err := run(t, `let a = []; try { for (;;) a.push("x" + a.length) } catch (e) { a = null; return e.message }`,
		Input{}, Limits{Timeout: 5 * time.Second, MemoryBytes: 2 << 20})
	if err != nil || res.Value != "out of memory" {
		t.Fatalf("Result = %+v, %v", res, err)
	}
}

func TestConcurrentRunsAreIsolated(t *testing.T) {
	const n = 50
	errs := make([]error, n)
	vals := make([]any, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Timeouts are wall-clock and the runaways hog the CPUs, so only
			// they get a short one.
			var code string
			lim := Limits{Timeout: 5 * time.Second, MemoryBytes: 4 << 20}
			switch i % 5 {
			case 0:
				lim.Timeout = 200 * time.Millisecond
				code = `globalThis.owner = event.i; while (true) {}`
			case 1:
				code = `globalThis.owner = event.i; const a = []; for (;;) a.push(new ArrayBuffer(1 << 16))`
			default:
				code = `
					if (typeof globalThis.owner !== "undefined") throw new Error("leak from " + globalThis.owner);
					globalThis.owner = event.i;
					Object.prototype.polluted = event.i;
					let s = 0; for (let k = 0; k < 1000; k++) s += k;
					return {value: event.i * 2 + s, context: {i: event.i}};`
			}
			res, err := Run(context.Background(), code, Input{Event: map[string]any{"i": float64(i)}}, lim)
			errs[i], vals[i] = err, res.Value
		})
	}
	wg.Wait()
	for i := range n {
		switch i % 5 {
		case 0:
			wantKind(t, errs[i], KindTimeout)
		case 1:
			wantKind(t, errs[i], KindMemory)
		default:
			if errs[i] != nil || vals[i] != float64(i*2+499500) {
				t.Errorf("run %d: %v, %v", i, vals[i], errs[i])
			}
		}
	}
}

func TestNoStateBetweenRuns(t *testing.T) {
	mustRun(t, `globalThis.x = 1; Object.prototype.p = 2; JSON.stringify = () => "hacked"; Array.prototype.push = null`, Input{})
	res := mustRun(t, `return [typeof x, typeof ({}).p, typeof [].push]`, Input{})
	if want := []any{"undefined", "undefined", "function"}; !reflect.DeepEqual(res.Value, want) {
		t.Fatalf("Value = %v, want %v", res.Value, want)
	}
}

func TestScriptCannotSubvertHarness(t *testing.T) {
	res := mustRun(t, `JSON.stringify = () => "Vforged"; JSON.parse = null; Function = null; return {branch: "real"}`, Input{})
	if res.Branch != "real" {
		t.Fatalf("Result = %+v", res)
	}
}

func TestNoHostAccess(t *testing.T) {
	res := mustRun(t, `return [
		"require", "process", "fetch", "setTimeout", "setInterval", "XMLHttpRequest", "WebSocket",
		"std", "os", "print", "console", "scriptArgs", "module", "exports", "Deno", "Bun", "__dirname",
	].filter((n) => typeof globalThis[n] !== "undefined")`, Input{})
	if got := res.Value.([]any); len(got) != 0 {
		t.Fatalf("host globals present: %v", got)
	}
	for _, code := range []string{`require("fs")`, `process.env`, `fetch("http://example.com")`, `setTimeout(() => 1, 1)`} {
		_, err := run(t, code, Input{}, testLimits)
		se := wantKind(t, err, KindRuntime)
		if !strings.HasPrefix(se.Message, "ReferenceError:") {
			t.Errorf("Run(%q) message = %q", code, se.Message)
		}
	}
	// A module import resolves nothing: there is no module loader, and the
	// promise's reactions never run because the sandbox runs no job queue.
	res = mustRun(t, `let seen = "pending"; import("os").then(() => { seen = "loaded" }, () => { seen = "failed" }); return seen`, Input{})
	if res.Value != "pending" {
		t.Fatalf("dynamic import: %v", res.Value)
	}
}

func TestDateHidesHostZone(t *testing.T) {
	if os.Getenv("SANDBOX_TZ_CHILD") == "" {
		// The engine reads the zone through libc once, from the process
		// environment, so only a process started with TZ set can prove it
		// stays hidden.
		for _, tz := range []string{"America/New_York", "Asia/Kolkata", "UTC"} {
			cmd := exec.Command(os.Args[0], "-test.run=^TestDateHidesHostZone$", "-test.v")
			cmd.Env = append(os.Environ(), "TZ="+tz, "SANDBOX_TZ_CHILD=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("TZ=%s: %v\n%s", tz, err, out)
			}
		}
		return
	}
	res := mustRun(t, `
		const t = Date.UTC(2020, 6, 1, 10, 30);
		const d = new Date(2020, 6, 1, 10, 30);
		return [
			new Date().getTimezoneOffset(),
			d.getTime() === t,
			new Date("2020-07-01T10:30").getTime() === t,
			Date.parse("2020-07-01T10:30:00") === t,
			Date.parse("Jul 1 2020 10:30") === t,
			Date.parse("2020-07-01T12:30+02:00") === t,
			Date.parse("Wed Jul 01 2020 11:30:00 GMT+0100") === t,
			Date.parse("2020-07-01") === Date.UTC(2020, 6, 1),
			new Date({valueOf: () => "2020-07-01T10:30"}).getTime() === t,
			new Date(t).getHours(),
			new Date(t).toString(),
			new Date(t).toLocaleTimeString(),
			typeof Date(),
			new Date(t).constructor === Date,
			new Date(t) instanceof Date,
		]`, Input{})
	want := []any{0.0, true, true, true, true, true, true, true, true, 10.0,
		"Wed, 01 Jul 2020 10:30:00 GMT", "Wed, 01 Jul 2020 10:30:00 GMT", "string", true, true}
	if !reflect.DeepEqual(res.Value, want) {
		t.Fatalf("TZ=%s: Value = %#v, want %#v", os.Getenv("TZ"), res.Value, want)
	}
}

func TestContextCancel(t *testing.T) {
	lim := Limits{Timeout: 5 * time.Second, MemoryBytes: 4 << 20}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, `return 1`, Input{}, lim)
	if se := wantKind(t, err, KindTimeout); !errors.Is(se, context.Canceled) {
		t.Fatalf("canceled before start: %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	go cancel()
	start := time.Now()
	_, err = Run(ctx, `while (true) {}`, Input{}, lim)
	if se := wantKind(t, err, KindTimeout); !errors.Is(se, context.Canceled) {
		t.Fatalf("canceled while running: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancel took %v", d)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = Run(ctx, `for (;;) { try { while (true) {} } catch (e) {} }`, Input{}, lim)
	if se := wantKind(t, err, KindTimeout); !errors.Is(se, context.DeadlineExceeded) {
		t.Fatalf("deadline while running: %v", err)
	}
}

func TestInvalidInputs(t *testing.T) {
	for _, lim := range []Limits{{Timeout: 0, MemoryBytes: 1 << 20}, {Timeout: time.Second, MemoryBytes: 0}} {
		if _, err := run(t, `return 1`, Input{}, lim); err == nil {
			t.Errorf("Limits %+v accepted", lim)
		}
	}
	_, err := run(t, `return 1`, Input{Profile: map[string]any{"c": make(chan int)}}, testLimits)
	var se *Error
	if err == nil || errors.As(err, &se) {
		t.Fatalf("unencodable input: %v, want a host error", err)
	}
}

func TestErrorText(t *testing.T) {
	_, err := run(t, `throw new Error("boom")`, Input{}, testLimits)
	if got, want := err.Error(), "sandbox: runtime: Error: boom"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func FuzzRun(f *testing.F) {
	for _, seed := range []string{
		`return 1`, `while(true){}`, `return {branch: "a", context: {x: 1}}`, `throw 1`, `return {`,
		`const a = []; for(;;) a.push(a)`, `return function(){}`, `function f(){f()} f()`,
		`return Date.parse("x")`, `import("os")`, `return new Date(2020, 1).toString()`, "\x00\xff",
		`let s = "a"; for (;;) s += s`, `return [1,,3]`, `return {branch: [], value: 1}`,
	} {
		f.Add(seed)
	}
	lim := Limits{Timeout: 20 * time.Millisecond, MemoryBytes: 1 << 20}
	f.Fuzz(func(t *testing.T, code string) {
		start := time.Now()
		res, err := Run(context.Background(), code, Input{Profile: map[string]any{"a": 1.0}}, lim)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Run(%q) took %v", code, d)
		}
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("Run(%q) = host error %v", code, err)
			}
			return
		}
		if _, err := json.Marshal(res); err != nil {
			t.Fatalf("Run(%q) = %#v, not JSON: %v", code, res, err)
		}
	})
}

func BenchmarkRun(b *testing.B) {
	in := Input{
		Profile: map[string]any{"plan": "pro", "ltv": 420.0},
		Event:   map[string]any{"type": "purchase", "amount": 12.5},
		Context: map[string]any{"visits": 3.0},
	}
	code := `return {branch: profile.ltv + event.amount > 400 ? "vip" : "regular", context: {visits: context.visits + 1}}`
	ctx := context.Background()
	for b.Loop() {
		res, err := Run(ctx, code, in, testLimits)
		if err != nil || res.Branch != "vip" {
			b.Fatalf("Run = %+v, %v", res, err)
		}
	}
}
