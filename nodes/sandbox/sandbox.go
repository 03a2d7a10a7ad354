// Package sandbox runs the JavaScript of custom_code nodes.
//
// The interpreter is modernc.org/quickjs, QuickJS transpiled to Go, chosen over
// goja because its allocator enforces a byte limit on everything a script
// allocates, where goja has no memory limit at all, and because its interrupt
// handler stops even a script that catches every exception. Each run gets a
// fresh runtime, so nothing a script does to its globals reaches another run.
package sandbox

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"modernc.org/quickjs"
)

// Limits bound one run. Both must be positive: a zero value is a caller bug,
// not a request for no limit.
type Limits struct {
	Timeout     time.Duration
	MemoryBytes int64
}

// Input is what the script sees as its profile, event and context arguments.
// A nil map reaches the script as an empty object, so that reading a property
// of an absent event is undefined rather than a TypeError.
type Input struct {
	Profile, Event, Context map[string]any
}

// Result is what the script returned. Branch is not checked against the
// node's branches here: the node knows them, the sandbox does not.
type Result struct {
	Value   any
	Context map[string]any
	Branch  string
}

// Error kinds.
const (
	KindSyntax  = "syntax"
	KindRuntime = "runtime"
	KindTimeout = "timeout"
	KindMemory  = "memory"
	KindOutput  = "output"
)

// Error is a failure of the script, as opposed to one of the host: the step
// that ran it fails with Kind and Message and the process carries on.
type Error struct {
	Kind    string
	Message string
	// cause lets a run stopped by its context match context.Canceled or
	// context.DeadlineExceeded with errors.Is.
	cause error
}

func (e *Error) Error() string { return "sandbox: " + e.Kind + ": " + e.Message }

func (e *Error) Unwrap() error { return e.cause }

// checkMemory bounds Check, which only parses: the largest memory a node may
// configure, so that code valid for some node never fails validation.
const checkMemory = 64 << 20

// maxStackFrames is the call depth a script may reach; see newVM.
const maxStackFrames = 500

// wrap makes code the body of the function Run calls. Code that closes the
// body early merely runs as top-level code of the same sandboxed program;
// Check only compiles, so nothing it is given ever runs.
func wrap(code string) string {
	return "(function (profile, event, context) {\n" + code + "\n})"
}

// harnessJS evaluates to the function Run and Check call; see harness.js.
//
//go:embed harness.js
var harnessJS string

// Run executes code as the body of a function called with (profile, event,
// context). If the script returns an object with a "branch" string and/or a
// "context" object, those become Result.Branch and Result.Context and its
// "value" key, if any, Result.Value; any other return value is Result.Value.
// Values cross as JSON: map[string]any, []any, float64, string, bool and nil.
func Run(ctx context.Context, code string, in Input, lim Limits) (Result, error) {
	if err := lim.validate(); err != nil {
		return Result{}, err
	}
	args := make([]any, 0, 4)
	args = append(args, wrap(code))
	for _, m := range []map[string]any{in.Profile, in.Event, in.Context} {
		s, err := encodeInput(m)
		if err != nil {
			return Result{}, err
		}
		args = append(args, s)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, canceled(err)
	}
	out, err := call(ctx, lim, args)
	if err != nil {
		return Result{}, err
	}
	var v any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return Result{}, &Error{Kind: KindOutput, Message: fmt.Sprintf("decode result: %v", err)}
	}
	return shape(v)
}

// Check compiles code without running it, for config validation.
func Check(code string) error {
	vm, err := newVM(Limits{Timeout: time.Second, MemoryBytes: checkMemory})
	if err != nil {
		return err
	}
	defer vm.Close()
	if _, err := vm.Compile(wrap(code), quickjs.EvalGlobal); err != nil {
		var qe *quickjs.Error
		if errors.As(err, &qe) && qe.Name == "SyntaxError" {
			return &Error{Kind: KindSyntax, Message: qe.Name + ": " + qe.Message}
		}
		return classify(context.Background(), Limits{}, err)
	}
	return nil
}

func (l Limits) validate() error {
	if l.Timeout <= 0 {
		return fmt.Errorf("sandbox: timeout must be positive, got %v", l.Timeout)
	}
	if l.MemoryBytes <= 0 {
		return fmt.Errorf("sandbox: memory limit must be positive, got %d bytes", l.MemoryBytes)
	}
	return nil
}

func encodeInput(m map[string]any) (string, error) {
	if m == nil {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("sandbox: encode input: %w", err)
	}
	return string(b), nil
}

// call runs the harness in a fresh VM and returns the JSON of the script's
// result, or the script's failure as an *Error.
func call(ctx context.Context, lim Limits, args []any) (string, error) {
	vm, err := newVM(lim)
	if err != nil {
		return "", err
	}
	defer vm.Close()

	harness, err := vm.EvalValue(harnessJS, quickjs.EvalGlobal)
	if err != nil {
		// The harness is ours and tiny, so only a limit too small to hold
		// it gets here; report that as the script's limit, not a host bug.
		return "", classify(ctx, lim, err)
	}
	defer harness.Free()

	done := make(chan struct{})
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(interrupted)
		interruptUntil(vm, done)
	})
	out, err := harness.Call(quickjs.UndefinedValue, args...)
	close(done)
	if !stop() {
		// The interrupter has started: wait for it, so that no goroutine
		// outlives the run it belongs to.
		<-interrupted
	}
	if err != nil {
		return "", classify(ctx, lim, err)
	}
	s, ok := out.(string)
	if !ok || s == "" {
		return "", fmt.Errorf("sandbox: harness returned %T", out)
	}
	return decodeOutcome(s[0], s[1:])
}

func newVM(lim Limits) (*quickjs.VM, error) {
	vm, err := quickjs.NewVM()
	if err != nil {
		return nil, fmt.Errorf("sandbox: new interpreter: %w", err)
	}
	vm.SetMemoryLimit(uintptr(lim.MemoryBytes))
	// Every catchable stack overflow walks the whole stack to build its
	// trace, and the engine polls for the timeout only every 10000 ticks, so
	// a script that recurses again from catch or finally overruns its timeout
	// in proportion to the depth allowed: about 10 s at the default 5000
	// frames, 2.7 s at 500. 500 frames is ample for a journey snippet.
	vm.SetMaxStackSize(maxStackFrames)
	if err := vm.SetEvalTimeout(lim.Timeout); err != nil {
		vm.Close()
		return nil, fmt.Errorf("sandbox: set timeout: %w", err)
	}
	return vm, nil
}

// interruptUntil interrupts vm until done is closed. A single Interrupt is
// not enough: the engine clears a pending interrupt when Go enters
// Javascript, so one sent just before the call starts would be lost and the
// script would run on until its timeout.
func interruptUntil(vm *quickjs.VM, done <-chan struct{}) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		vm.Interrupt()
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// decodeOutcome reads the harness's answer: one letter for how the script
// ended, then the JSON result or the error message.
func decodeOutcome(tag byte, rest string) (string, error) {
	kind := ""
	switch tag {
	case 'V':
		return rest, nil
	case 'S':
		kind = KindSyntax
	case 'R':
		kind = KindRuntime
	case 'O':
		kind = KindOutput
	default:
		return "", fmt.Errorf("sandbox: harness returned unknown outcome %q", tag)
	}
	if isResourceError(rest) {
		kind = KindMemory
	}
	return "", &Error{Kind: kind, Message: rest}
}

// isResourceError reports whether msg is one the engine throws when a script
// exhausts the heap, the call stack or the longest string: a script can
// catch those, but one that does not has failed by its size, not its logic.
func isResourceError(msg string) bool {
	switch msg {
	case "InternalError: out of memory", "InternalError: out of memory (null thrown)",
		"InternalError: stack overflow", "InternalError: string too long":
		return true
	}
	return false
}

// classify turns an exception that escaped the harness into an *Error. Only
// the engine's uncatchable interrupt and an out-of-memory too deep for the
// harness to describe get this far.
func classify(ctx context.Context, lim Limits, err error) error {
	var qe *quickjs.Error
	if !errors.As(err, &qe) {
		return fmt.Errorf("sandbox: run script: %w", err)
	}
	msg := qe.Name + ": " + qe.Message
	switch {
	case msg == "InternalError: interrupted":
		if cerr := ctx.Err(); cerr != nil {
			return canceled(cerr)
		}
		return &Error{Kind: KindTimeout, Message: fmt.Sprintf("script ran longer than %v", lim.Timeout)}
	case isResourceError(msg):
		return &Error{Kind: KindMemory, Message: msg}
	default:
		return &Error{Kind: KindRuntime, Message: msg}
	}
}

func canceled(err error) error {
	return &Error{Kind: KindTimeout, Message: fmt.Sprintf("script stopped: %v", err), cause: err}
}

// shape splits a returned control object into its parts. null counts as
// absent, so that `branch: cond ? "a" : null` does not fail the step.
func shape(v any) (Result, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return Result{Value: v}, nil
	}
	branch, branchOK := obj["branch"].(string)
	ctxOut, contextOK := obj["context"].(map[string]any)
	if !branchOK && !contextOK {
		return Result{Value: v}, nil
	}
	if b, ok := obj["branch"]; ok && b != nil && !branchOK {
		return Result{}, &Error{Kind: KindOutput, Message: fmt.Sprintf("branch must be a string, got %s", jsType(b))}
	}
	if c, ok := obj["context"]; ok && c != nil && !contextOK {
		return Result{}, &Error{Kind: KindOutput, Message: fmt.Sprintf("context must be an object, got %s", jsType(c))}
	}
	return Result{Value: obj["value"], Context: ctxOut, Branch: branch}, nil
}

func jsType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	default:
		return "an object"
	}
}
