package compose

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/osteele/liquid"
	"github.com/osteele/liquid/render"
)

// Limits on what one render may take, so that a template cannot take down
// the process every tenant shares.
const (
	// MaxOutput bounds a field's output, and the strings the filters that
	// build them (append, prepend, replace, join) return.
	MaxOutput = 1 << 20
	// MaxRange bounds the items of a range a loop iterates over.
	MaxRange = 10000
	// RenderBudget is how long a render may run before it is given up.
	RenderBudget = 2 * time.Second
	// maxRendering bounds the renders running at once. A render given up
	// keeps its slot until it ends: runaway templates cannot pile up.
	maxRendering = 8
	// maxCachedBytes bounds the sources of the parsed templates kept.
	maxCachedBytes = 16 << 20
)

var (
	errIncludeRefused = errors.New("the include tag is not available: templates cannot read files")
	errTooLong        = fmt.Errorf("the template builds more than %d bytes", MaxOutput)
	errTooSlow        = errors.New("the template took too long to render")
	// ErrBusy is a render that found every slot taken by others: it may
	// pass later.
	ErrBusy = errors.New("templates are busy rendering; try again")
)

// Renderer renders Liquid sources. Parsed sources are cached: every
// customer passing a node renders the same few.
type Renderer struct {
	engine *liquid.Engine
	slots  chan struct{}
	budget time.Duration

	mu          sync.Mutex
	parsed      map[string]*liquid.Template
	cachedBytes int
}

// NewRenderer returns a renderer with Liquid's standard tags and filters,
// except include, which would read the process's files, and with the
// filters that build strings and lists held to MaxOutput and MaxRange.
// (capture is not held: the library does not let its tags be replaced.)
func NewRenderer() *Renderer {
	e := liquid.NewEngine()
	e.RegisterTag("include", func(render.Context) (string, error) { return "", errIncludeRefused })
	e.RegisterFilter("append", func(s, suffix string) (string, error) { return within(len(s)+len(suffix), s+suffix) })
	e.RegisterFilter("prepend", func(s, prefix string) (string, error) { return within(len(s)+len(prefix), prefix+s) })
	e.RegisterFilter("replace", func(s, old, repl string) (string, error) {
		if grown := strings.Count(s, old) * (len(repl) - len(old)); old == "" || len(s)+grown > MaxOutput {
			return "", errTooLong
		}
		return strings.ReplaceAll(s, old, repl), nil
	})
	e.RegisterFilter("join", func(a []any, sep func(string) string) (string, error) {
		parts := make([]string, 0, len(a))
		n := 0
		for _, v := range a {
			if v != nil {
				parts = append(parts, fmt.Sprint(v))
				n += len(parts[len(parts)-1]) + len(sep(" "))
			}
		}
		return within(n, strings.Join(parts, sep(" ")))
	})
	e.RegisterFilter("concat", func(a, b []any) ([]any, error) {
		if len(a)+len(b) > MaxRange {
			return nil, fmt.Errorf("concat would make a list of more than %d items", MaxRange)
		}
		return append(append(make([]any, 0, len(a)+len(b)), a...), b...), nil
	})
	return &Renderer{engine: e, slots: make(chan struct{}, maxRendering), budget: RenderBudget, parsed: map[string]*liquid.Template{}}
}

// within returns s, or errTooLong when its length n is past MaxOutput.
func within(n int, s string) (string, error) {
	if n > MaxOutput {
		return "", errTooLong
	}
	return s, nil
}

// Check parses source and returns its syntax error, if any. What it
// parses is not cached: checks are of sources that may never render.
func (r *Renderer) Check(source string) error {
	if _, err := r.engine.ParseString(source); err != nil {
		return err
	}
	return nil
}

// Render renders source with vars, within the limits above. The Liquid
// library panics on some errors (a write refused past MaxOutput among
// them); a panic is returned as the error, so a template can fail its
// delivery, never the process.
func (r *Renderer) Render(source string, vars map[string]any) (string, error) {
	if !strings.Contains(source, "{{") && !strings.Contains(source, "{%") {
		return source, nil
	}
	t, err := r.parse(source)
	if err != nil {
		return "", err
	}
	if err := r.checkRanges(t.GetRoot(), vars); err != nil {
		return "", err
	}
	budget := time.NewTimer(r.budget)
	defer budget.Stop()
	select {
	case r.slots <- struct{}{}:
	case <-budget.C:
		return "", ErrBusy
	}
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-r.slots }()
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: fmt.Errorf("render: %v", p)}
			}
		}()
		var buf capped
		if err := t.FRender(&buf, vars); err != nil {
			if errors.Is(err, errTooLong) {
				done <- result{err: errTooLong}
				return
			}
			done <- result{err: err}
			return
		}
		done <- result{out: buf.String()}
	}()
	select {
	case res := <-done:
		return res.out, res.err
	case <-budget.C:
		return "", errTooSlow
	}
}

// rangeLoop reads the range of a for or tablerow tag: "x in (a..b) …".
var rangeLoop = regexp.MustCompile(`^\s*\w+\s+in\s+\(\s*(.+?)\s*\.\.\s*(.+?)\s*\)`)

// checkRanges refuses loops over ranges of more than MaxRange items,
// evaluating their bounds against vars (a bound that depends on an outer
// loop's variable evaluates as nothing here and is not held back).
func (r *Renderer) checkRanges(n render.Node, vars map[string]any) error {
	switch n := n.(type) {
	case *render.SeqNode:
		for _, c := range n.Children {
			if err := r.checkRanges(c, vars); err != nil {
				return err
			}
		}
	case *render.BlockNode:
		if m := rangeLoop.FindStringSubmatch(n.Args); m != nil && (n.Name == "for" || n.Name == "tablerow") {
			lo, hi := r.bound(m[1], vars), r.bound(m[2], vars)
			if hi-lo+1 > MaxRange {
				return fmt.Errorf("a loop over %d items exceeds %d (%s)", hi-lo+1, MaxRange, n.Source)
			}
		}
		for _, c := range n.Body {
			if err := r.checkRanges(c, vars); err != nil {
				return err
			}
		}
		for _, c := range n.Clauses {
			if err := r.checkRanges(c, vars); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *Renderer) bound(expr string, vars map[string]any) int {
	out, serr := r.engine.ParseAndRenderString("{{ "+expr+" }}", vars)
	if serr != nil {
		return 0
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if err != nil {
		return 0
	}
	return int(max(min(f, 1e15), -1e15))
}

func (r *Renderer) parse(source string) (*liquid.Template, error) {
	r.mu.Lock()
	t, ok := r.parsed[source]
	r.mu.Unlock()
	if ok {
		return t, nil
	}
	t, serr := r.engine.ParseString(source)
	if serr != nil {
		return nil, serr
	}
	r.mu.Lock()
	if r.cachedBytes+len(source) > maxCachedBytes {
		r.parsed, r.cachedBytes = map[string]*liquid.Template{}, 0
	}
	r.parsed[source] = t
	r.cachedBytes += len(source)
	r.mu.Unlock()
	return t, nil
}

// capped is a buffer that refuses to grow past MaxOutput.
type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if c.Len()+len(p) > MaxOutput {
		return 0, errTooLong
	}
	return c.Buffer.Write(p)
}
