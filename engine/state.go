package engine

import (
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/kalcifer/kalcifer/nodes"
)

// Instance statuses. They match the store's spelling, but the engine does
// not import the store: it decides states, the store only keeps them.
const (
	StatusRunning = "running"
	StatusWaiting = "waiting"
	StatusPaused  = "paused"
	// StatusHeld is an instance a migration holds: a node it was at is
	// gone and the removed-node policy was hold. Like a paused one it runs
	// nothing, until it is released to a node of its version.
	StatusHeld      = "held"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusExited    = "exited"
)

// Terminal reports whether an instance in this status is over for good.
func Terminal(status string) bool {
	return status == StatusCompleted || status == StatusFailed || status == StatusExited
}

// seenEventsKept bounds SeenEvents: a redelivery arrives within seconds,
// so the last few dozen ids catch it without the snapshot growing forever.
const seenEventsKept = 64

// defaultMaxSteps bounds the node executions of one Step so that one
// trigger cannot hold its grain for long; Continue picks up the rest.
const defaultMaxSteps = 1000

// State is one instance: the snapshot the store keeps between steps.
type State struct {
	InstanceID string `json:"instance_id"`
	TenantID   string `json:"tenant_id"`
	JourneyID  string `json:"journey_id"`
	CustomerID string `json:"customer_id"`
	// EntryKey identifies the enrolment (event id, trigger id), so that
	// the store can refuse a second instance for the same entry.
	EntryKey string `json:"entry_key"`
	Version  int    `json:"version"`
	Status   string `json:"status"`
	// Tokens are the live positions, one per parallel branch.
	Tokens  []Token        `json:"tokens"`
	Context map[string]any `json:"context"`
	// Visits counts how many times each node was entered; it keys deliveries.
	Visits    map[string]int `json:"visits"`
	NextToken int            `json:"next_token"`
	// Seq numbers the recorded steps of the instance.
	Seq int64 `json:"seq"`
	// SeenEvents holds the ids of the last events applied, so that a
	// redelivered event is a no-op.
	SeenEvents []string `json:"seen_events,omitempty"`
	// Migration is the last migration applied to the instance.
	Migration string `json:"migration,omitempty"`
	// PausedStatus is the status a paused instance returns to on resume.
	PausedStatus string    `json:"paused_status,omitempty"`
	Error        string    `json:"error,omitempty"`
	Goals        []string  `json:"goals,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// Token is where one branch of an instance is: at NodeID, ready to run it
// when Wait is nil, parked on it otherwise.
type Token struct {
	ID     string      `json:"id"`
	NodeID string      `json:"node_id"`
	Wait   *nodes.Wait `json:"wait,omitempty"`
	// Held marks a token a migration holds at NodeID, a node its version
	// no longer has.
	Held bool `json:"held,omitempty"`
}

// NewState is an instance before its Start trigger.
func NewState(instanceID, tenantID, journeyID string, version int, customerID, entryKey string, now time.Time) State {
	return State{
		InstanceID: instanceID, TenantID: tenantID, JourneyID: journeyID, Version: version,
		CustomerID: customerID, EntryKey: entryKey, Status: StatusRunning,
		Context: map[string]any{}, Visits: map[string]int{}, CreatedAt: now, UpdatedAt: now,
	}
}

// clone copies what a step changes, so that the caller's state is left as
// it was (a no-op returns it untouched). Waits are replaced, never mutated,
// so tokens can share them.
func (s State) clone() State {
	s.Tokens = slices.Clone(s.Tokens)
	s.Context = maps.Clone(s.Context)
	if s.Context == nil {
		s.Context = map[string]any{}
	}
	s.Visits = maps.Clone(s.Visits)
	if s.Visits == nil {
		s.Visits = map[string]int{}
	}
	s.SeenEvents = slices.Clone(s.SeenEvents)
	s.Goals = slices.Clone(s.Goals)
	return s
}

// TriggerKind says why Step runs.
type TriggerKind string

// Trigger kinds.
const (
	// TriggerStart starts a new instance at EntryNodeID, or the first entry node.
	TriggerStart TriggerKind = "start"
	// TriggerContinue re-drives a running instance, after a restart or a
	// step that stopped at MaxSteps.
	TriggerContinue TriggerKind = "continue"
	// TriggerTimer fires TokenID's timer.
	TriggerTimer TriggerKind = "timer"
	// TriggerEvent applies a customer event: exit criteria, then waits.
	TriggerEvent  TriggerKind = "event"
	TriggerPause  TriggerKind = "pause"
	TriggerResume TriggerKind = "resume"
	TriggerCancel TriggerKind = "cancel"
	// TriggerMigrate moves the instance to another version of its journey
	// (Trigger.Migration); Env.Plan is that version's.
	TriggerMigrate TriggerKind = "migrate"
	// TriggerRelease sends a held instance's held tokens to Trigger.NodeID.
	TriggerRelease TriggerKind = "release"
)

// Trigger is one input to an instance.
type Trigger struct {
	Kind TriggerKind
	// Event is the entry event (Start) or the event to apply (Event).
	Event       *nodes.Event
	EntryNodeID string
	TokenID     string
	// Reason explains a Cancel; it is appended to the instance's error.
	Reason string
	// Data is a manual trigger's payload, kept as context.trigger.
	Data map[string]any
	// Migration is what a Migrate trigger applies.
	Migration *Migration
	// NodeID is where a Release trigger sends held tokens.
	NodeID string
}

// Env is the outside world a step may read.
type Env struct {
	Plan *Plan
	Now  time.Time
	// Customer is the profile as committed; Step works on a copy.
	Customer nodes.Customer
	// SentSince counts the customer's committed deliveries on a channel
	// ("all": every channel) at or after since, across the tenant's
	// journeys; nil counts none.
	SentSince func(channel string, since time.Time) int
	// MaxSteps bounds node executions per Step; 0 means 1000.
	MaxSteps int
}

// Effects is everything a step asks the world to do, committed with the
// state before any of it happens.
type Effects struct {
	Steps      []StepRecord `json:"steps,omitempty"`
	Deliveries []Delivery   `json:"deliveries,omitempty"`
	// Timers is the full set of timers the instance needs now; the store
	// replaces the instance's timers with it.
	Timers []Timer `json:"timers,omitempty"`
	// Waits is the full set of event types the instance listens for now,
	// including the journey's exit criteria.
	Waits   []string             `json:"waits,omitempty"`
	Profile *nodes.ProfileChange `json:"profile,omitempty"`
	Goals   []string             `json:"goals,omitempty"`
	// Changed is false when the trigger was a no-op and nothing is to be committed.
	Changed bool `json:"changed"`
}

// StepRecord is one node execution, for the instance timeline and analytics.
// (It is not called Step because Step is the state machine's function.)
type StepRecord struct {
	Seq      int64           `json:"seq"`
	NodeID   string          `json:"node_id"`
	NodeType string          `json:"node_type"`
	Version  int             `json:"version"`
	TokenID  string          `json:"token_id"`
	Outcome  string          `json:"outcome"`
	Branch   string          `json:"branch,omitempty"`
	Input    json.RawMessage `json:"input,omitempty"`
	Output   json.RawMessage `json:"output,omitempty"`
	Error    string          `json:"error,omitempty"`
	At       time.Time       `json:"at"`
}

// Step outcomes as recorded.
const (
	OutcomeCompleted = "completed"
	OutcomeBranched  = "branched"
	OutcomeWaiting   = "waiting"
	OutcomeEnded     = "ended"
	OutcomeExited    = "exited"
	OutcomeFailed    = "failed"
	OutcomeResumed   = "resumed"
	OutcomeSkipped   = "skipped"
	OutcomeMigrated  = "migrated"
	OutcomeReleased  = "released"
)

// Delivery is a message to dispatch after the commit. Key is its
// idempotency key, "<instance>:<node>:<visit>".
type Delivery struct {
	Key     string          `json:"key"`
	NodeID  string          `json:"node_id"`
	Channel string          `json:"channel"`
	Payload json.RawMessage `json:"payload"`
}

// Timer asks for a Timer trigger for TokenID at DueAt.
type Timer struct {
	TokenID string    `json:"token_id"`
	DueAt   time.Time `json:"due_at"`
}
