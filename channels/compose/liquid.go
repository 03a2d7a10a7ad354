package compose

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/osteele/liquid"
	"github.com/osteele/liquid/render"
)

// MaxOutput bounds what one field renders to, so that a loop in a template
// cannot fill the memory of the process.
const MaxOutput = 1 << 20

// maxCached bounds the parsed templates kept; past it the cache starts
// again empty.
const maxCached = 4096

var (
	errIncludeRefused = errors.New("the include tag is not available: templates cannot read files")
	errTooLong        = fmt.Errorf("rendered output exceeds %d bytes", MaxOutput)
)

// Renderer renders Liquid sources. Parsed sources are cached: every
// customer passing a node renders the same few.
type Renderer struct {
	engine *liquid.Engine
	mu     sync.Mutex
	parsed map[string]*liquid.Template
}

// NewRenderer returns a renderer with Liquid's standard tags and filters,
// except include, which would read the process's files.
func NewRenderer() *Renderer {
	e := liquid.NewEngine()
	e.RegisterTag("include", func(render.Context) (string, error) { return "", errIncludeRefused })
	return &Renderer{engine: e, parsed: map[string]*liquid.Template{}}
}

// Check parses source and returns its syntax error, if any.
func (r *Renderer) Check(source string) error {
	_, err := r.parse(source)
	return err
}

// Render renders source with vars. The Liquid library panics on some
// errors (a write refused past MaxOutput among them); a panic is returned
// as the error, so a template can fail its delivery, never the process.
func (r *Renderer) Render(source string, vars map[string]any) (out string, err error) {
	if !strings.Contains(source, "{{") && !strings.Contains(source, "{%") {
		return source, nil
	}
	t, err := r.parse(source)
	if err != nil {
		return "", err
	}
	defer func() {
		if p := recover(); p != nil {
			out, err = "", fmt.Errorf("render: %v", p)
		}
	}()
	var buf capped
	if err := t.FRender(&buf, vars); err != nil {
		if errors.Is(err, errTooLong) {
			return "", errTooLong
		}
		return "", err
	}
	return buf.String(), nil
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
	if len(r.parsed) >= maxCached {
		r.parsed = map[string]*liquid.Template{}
	}
	r.parsed[source] = t
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
