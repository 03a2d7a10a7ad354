package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"
)

// Service is a long-running background job (timer service, event router, outbox dispatcher...). Run
// returns when ctx is cancelled; returning nil means the service is done and is not restarted, returning
// an error (or panicking) is a crash.
type Service interface {
	Name() string
	Run(ctx context.Context) error
}

// Strategy decides which children restart when one crashes.
type Strategy int

const (
	// OneForOne restarts only the crashed child.
	OneForOne Strategy = iota
	// RestForOne restarts the crashed child and every child started after it, for services that depend
	// on the ones before them.
	RestForOne
)

func (s Strategy) String() string {
	if s == RestForOne {
		return "rest_for_one"
	}
	return "one_for_one"
}

// ErrGaveUp is returned by Tree.Run when children crashed more often than the restart intensity allows.
var ErrGaveUp = errors.New("supervision tree gave up")

// TreeOptions configure a Tree. Its Policy counts crashes across all
// children (BackoffMax defaults to 10 s). Zero values take the defaults.
type TreeOptions struct {
	// Name identifies the tree in logs and, when nested, as a Service. Default "tree".
	Name     string
	Strategy Strategy
	Policy
}

// Tree supervises services. It is itself a Service, so trees nest: a child tree that gives up is a crash
// of its parent.
type Tree struct {
	opts     TreeOptions
	services []Service
}

var _ Service = (*Tree)(nil)

// NewTree supervises children, started in the order given and stopped in reverse.
func NewTree(opts TreeOptions, children ...Service) *Tree {
	if opts.Name == "" {
		opts.Name = "tree"
	}
	opts.Policy = opts.Policy.withDefaults(10 * time.Second)
	return &Tree{opts: opts, services: children}
}

func (t *Tree) Name() string { return t.opts.Name }

type treeChild struct {
	svc     Service
	gen     int
	running bool
	cancel  context.CancelFunc
	done    chan struct{}
}

type childExit struct {
	idx, gen int
	err      error
}

// run is the state of one Tree.Run call.
type run struct {
	t        *Tree
	ctx      context.Context
	children []*treeChild
	exits    chan childExit
	quit     chan struct{}
	crashes  []time.Time
}

// Run starts the children and supervises them until ctx is cancelled (it then stops them all and returns
// nil) or the restart intensity is exceeded (it stops them all and returns an error matching ErrGaveUp).
func (t *Tree) Run(ctx context.Context) error {
	r := &run{t: t, ctx: ctx, exits: make(chan childExit), quit: make(chan struct{})}
	defer close(r.quit)
	for _, svc := range t.services {
		r.children = append(r.children, &treeChild{svc: svc})
	}
	for i := range r.children {
		r.start(i)
	}
	for {
		select {
		case <-ctx.Done():
			r.stopFrom(0)
			return nil
		case ev := <-r.exits:
			if err := r.handle(ev); err != nil {
				r.stopFrom(0)
				return err
			}
		}
	}
}

func (r *run) start(i int) {
	c := r.children[i]
	c.gen++
	ctx, cancel := context.WithCancel(r.ctx)
	c.cancel, c.done, c.running = cancel, make(chan struct{}), true
	go func(gen int, done chan struct{}) {
		err := runService(ctx, c.svc)
		close(done)
		select {
		case r.exits <- childExit{idx: i, gen: gen, err: err}:
		case <-r.quit:
		}
	}(c.gen, c.done)
}

// stopFrom stops children i and later, last first, and waits for each.
func (r *run) stopFrom(i int) []int {
	var stopped []int
	for j := len(r.children) - 1; j >= i; j-- {
		c := r.children[j]
		if !c.running {
			continue
		}
		// Bumping the generation marks the exit this causes as expected.
		c.gen++
		c.cancel()
		<-c.done
		c.running = false
		stopped = append([]int{j}, stopped...)
	}
	return stopped
}

func (r *run) handle(ev childExit) error {
	c := r.children[ev.idx]
	if ev.gen != c.gen {
		return nil
	}
	c.running = false
	c.cancel()
	log := r.t.opts.Logger.With(slog.String("tree", r.t.opts.Name), slog.String("service", c.svc.Name()))
	if ev.err == nil {
		log.Info("service stopped")
		return nil
	}
	now := r.t.opts.Clock.Now()
	horizon := now.Add(-r.t.opts.Window)
	kept := r.crashes[:0]
	for _, at := range r.crashes {
		if at.After(horizon) {
			kept = append(kept, at)
		}
	}
	r.crashes = append(kept, now)
	if len(r.crashes) > r.t.opts.MaxRestarts {
		log.Error("service crashed; restart intensity exceeded", slog.Any("error", ev.err),
			slog.Int("crashes_in_window", len(r.crashes)))
		return fmt.Errorf("%w: %s: %d crashes within %s, last %s: %w",
			ErrGaveUp, r.t.opts.Name, len(r.crashes), r.t.opts.Window, c.svc.Name(), ev.err)
	}
	restart := []int{ev.idx}
	if r.t.opts.Strategy == RestForOne {
		restart = append(restart, r.stopFrom(ev.idx+1)...)
	}
	backoff := min(r.t.opts.BackoffBase<<(len(r.crashes)-1), r.t.opts.BackoffMax)
	log.Error("service crashed; restarting", slog.Any("error", ev.err), slog.String("strategy", r.t.opts.Strategy.String()),
		slog.Int("crashes_in_window", len(r.crashes)), slog.Duration("backoff", backoff))
	select {
	case <-r.t.opts.Clock.After(backoff):
	case <-r.ctx.Done():
		return nil
	}
	for _, i := range restart {
		r.start(i)
	}
	return nil
}

// runService turns a panic into a crash, as a child process dying in OTP.
func runService(ctx context.Context, svc Service) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("service %s panicked: %v\n%s", svc.Name(), p, debug.Stack())
		}
	}()
	return svc.Run(ctx)
}
