package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Errors of the execution aggregates.
var (
	// ErrStaleEpoch: the commit came from an activation that is no longer
	// the instance's owner; the caller must stop, not retry.
	ErrStaleEpoch = errors.New("stale instance epoch")
	// ErrActiveInstance: the customer already has an active instance of the journey.
	ErrActiveInstance = errors.New("customer already has an active instance of this journey")
	// ErrDuplicateEntry: an instance with the same entry key exists already,
	// so this enrolment was done before (an event or trigger delivered twice).
	ErrDuplicateEntry = errors.New("entry already processed")
)

// Instance statuses; completed, failed and exited are terminal.
const (
	InstanceRunning = "running"
	InstanceWaiting = "waiting"
	InstancePaused  = "paused"
	// InstanceHeld (store/migrations.go) is not terminal either.
	InstanceCompleted = "completed"
	InstanceFailed    = "failed"
	InstanceExited    = "exited"
)

// Customer is a tenant's end user.
type Customer struct {
	ID         string         `json:"id"`
	TenantID   string         `json:"tenant_id"`
	ExternalID string         `json:"external_id"`
	Email      string         `json:"email"`
	Phone      string         `json:"phone"`
	Name       string         `json:"name"`
	Timezone   string         `json:"timezone"`
	Properties map[string]any `json:"properties"`
	Tags       []string       `json:"tags"`
	// Preferences maps a channel to whether the customer accepts it; a
	// channel that is absent is accepted.
	Preferences map[string]bool `json:"preferences"`
	PushTokens  []string        `json:"push_tokens"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

// CustomerPatch changes a customer; nil fields stay as they are. Properties
// and Preferences are merged key by key, and a nil property removes the key.
// Tags are added without repeats, then removed.
type CustomerPatch struct {
	Email       *string
	Phone       *string
	Name        *string
	Timezone    *string
	Properties  map[string]any
	AddTags     []string
	RemoveTags  []string
	Preferences map[string]bool
	PushTokens  *[]string
}

// CustomerFilter narrows ListCustomers; ordered by id; After is the last id of the previous page.
type CustomerFilter struct {
	Tag   string
	After string
	Limit int
}

// Customers stores customer profiles.
type Customers interface {
	// UpsertCustomer creates the customer with this external id, or applies
	// the patch to the existing one. created says which.
	UpsertCustomer(ctx context.Context, tenantID, externalID string, p CustomerPatch, at time.Time) (c Customer, created bool, err error)
	GetCustomer(ctx context.Context, tenantID, id string) (Customer, error)
	GetCustomerByExternalID(ctx context.Context, tenantID, externalID string) (Customer, error)
	// PatchCustomer changes an existing customer; ErrNotFound if there is none.
	PatchCustomer(ctx context.Context, tenantID, id string, p CustomerPatch, at time.Time) (Customer, error)
	ListCustomers(ctx context.Context, tenantID string, f CustomerFilter) ([]Customer, error)
}

// Event is a customer event as stored.
type Event struct {
	ID         string          `json:"id"`
	TenantID   string          `json:"tenant_id"`
	CustomerID string          `json:"customer_id"`
	MessageID  string          `json:"message_id"`
	Type       string          `json:"type"`
	Properties json.RawMessage `json:"properties"`
	Timestamp  time.Time       `json:"timestamp"`
	ReceivedAt time.Time       `json:"received_at"`
	// RoutedAt is set once the event reached its customer's instances; an
	// unrouted event is claimed by a sweep, of any node, and routed again.
	RoutedAt *time.Time `json:"routed_at,omitempty"`
}

// Events stores ingested events.
type Events interface {
	// AppendEvents stores the events that are new, in one transaction, and
	// returns for each input its stored event and whether its message id had
	// been seen already (then nothing is stored and the earlier event is returned).
	// An event without a message id is its own message; a zero ReceivedAt
	// is now and a zero Timestamp is ReceivedAt.
	AppendEvents(ctx context.Context, tenantID string, events []Event) ([]Event, []bool, error)
	// ClaimUnroutedEvents leases to the caller, until now+lease, up to limit
	// events of any tenant not yet routed, received at or before
	// receivedBefore and not leased at now, the oldest first, and returns
	// them oldest first. No other claim returns them while the lease runs;
	// an event still unrouted then can be claimed again. A limit of 0 or
	// less claims every one.
	ClaimUnroutedEvents(ctx context.Context, receivedBefore, now time.Time, lease time.Duration, limit int) ([]Event, error)
	MarkRouted(ctx context.Context, tenantID string, ids []string, at time.Time) error
	// ListCustomerEvents returns the customer's events, newest first.
	ListCustomerEvents(ctx context.Context, tenantID, customerID string, limit int) ([]Event, error)
}

// Instance is one customer's run through one journey version. Snapshot is
// the engine's state, opaque to the store; the other fields are what queries need.
type Instance struct {
	ID         string `json:"id"`
	TenantID   string `json:"tenant_id"`
	JourneyID  string `json:"journey_id"`
	Version    int    `json:"version"`
	CustomerID string `json:"customer_id"`
	Status     string `json:"status"`
	// Nodes are the nodes the instance's tokens are at.
	Nodes []string `json:"nodes"`
	// EntryKey identifies the enrolment (entry event id, trigger request id)
	// and is unique per journey, so an enrolment replayed is not doubled.
	// An empty key is never a duplicate.
	EntryKey  string          `json:"entry_key"`
	Snapshot  json.RawMessage `json:"-"`
	Epoch     int64           `json:"-"`
	Error     string          `json:"error,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	EndedAt   *time.Time      `json:"ended_at,omitempty"`
}

// Step is one node execution, as recorded for the timeline.
type Step struct {
	InstanceID string `json:"instance_id"`
	// Seq orders the timeline; a step committed with 0 is numbered after
	// the instance's last.
	Seq        int64           `json:"seq"`
	NodeID     string          `json:"node_id"`
	NodeType   string          `json:"node_type"`
	Version    int             `json:"version"`
	TokenID    string          `json:"token_id"`
	Outcome    string          `json:"outcome"`
	Branch     string          `json:"branch,omitempty"`
	Input      json.RawMessage `json:"input,omitempty"`
	Output     json.RawMessage `json:"output,omitempty"`
	Error      string          `json:"error,omitempty"`
	StartedAt  time.Time       `json:"started_at"`
	FinishedAt time.Time       `json:"finished_at"`
}

// Timer wakes one token of an instance at DueAt.
type Timer struct {
	TenantID   string `json:"tenant_id"`
	InstanceID string `json:"instance_id"`
	// CustomerID is the instance's customer; a commit sets it from its
	// instance, whatever the timer says.
	CustomerID string    `json:"customer_id"`
	TokenID    string    `json:"token_id"`
	DueAt      time.Time `json:"due_at"`
}

// Wait registers that an instance waits for a customer's event of a type,
// so the event router finds it without loading every instance.
type Wait struct {
	TenantID   string `json:"tenant_id"`
	CustomerID string `json:"customer_id"`
	EventType  string `json:"event_type"`
	InstanceID string `json:"instance_id"`
}

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliverySent      = "sent"
	DeliveryDelivered = "delivered"
	DeliveryBounced   = "bounced"
	DeliveryFailed    = "failed"
	DeliverySkipped   = "skipped"
)

// Delivery is an outbox row: a message an instance committed to send. Key
// (instance, node, visit) is unique, so a step replayed never sends twice.
type Delivery struct {
	ID                string          `json:"id"`
	TenantID          string          `json:"tenant_id"`
	Key               string          `json:"key"`
	JourneyID         string          `json:"journey_id"`
	InstanceID        string          `json:"instance_id"`
	CustomerID        string          `json:"customer_id"`
	NodeID            string          `json:"node_id"`
	Channel           string          `json:"channel"`
	Payload           json.RawMessage `json:"payload"`
	Status            string          `json:"status"`
	Provider          string          `json:"provider,omitempty"`
	ProviderMessageID string          `json:"provider_message_id,omitempty"`
	Error             string          `json:"error,omitempty"`
	// ErrorCode is the stable reason of a skip or failure, or the last
	// retryable failure of a delivery still pending.
	ErrorCode string `json:"error_code,omitempty"`
	Attempts  int    `json:"attempts"`
	// TemplateVersion is the version of the node's template the message
	// was rendered from, 0 when it has none.
	TemplateVersion int `json:"template_version,omitempty"`
	// ClaimUntil is when the delivery's claim lapses, or, for a delivery
	// deferred (a retry's backoff, quiet hours), when it may be sent. A
	// claim's value also identifies the claim.
	ClaimUntil time.Time `json:"-"`
	// AttemptStarted is set while a send is under way and cleared when its
	// outcome is recorded; a claim that finds it set is looking at a send
	// that may have reached the provider.
	AttemptStarted time.Time  `json:"-"`
	SentAt         *time.Time `json:"sent_at,omitempty"`
	DeliveredAt    *time.Time `json:"delivered_at,omitempty"`
	OpenedAt       *time.Time `json:"opened_at,omitempty"`
	ClickedAt      *time.Time `json:"clicked_at,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// Commit is everything one engine step changes, written atomically.
type Commit struct {
	// Instance is the instance's new row. Its Epoch must equal the stored
	// epoch (the activation's claim), else the commit fails with ErrStaleEpoch.
	Instance Instance
	// Create inserts the instance (epoch 1) instead of updating it, with an
	// ins_ id if it has none. A terminal instance only takes commits that
	// keep its status; others fail with ErrConflict.
	Create bool
	Steps  []Step
	// Deliveries belong to the instance, whatever their tenant, journey,
	// instance and customer say; they are pending unless given a status and
	// created at Instance.UpdatedAt unless given a time.
	Deliveries []Delivery
	// Timers and Waits replace the instance's timers and waits.
	Timers []Timer
	Waits  []Wait
	// Customer, if not nil, is applied to the instance's customer.
	Customer *CustomerPatch
}

// InstanceFilter narrows ListInstances; ordered by id; After is the last id of the previous page.
type InstanceFilter struct {
	JourneyID  string
	Status     string
	Version    int
	CustomerID string
	NodeID     string
	After      string
	Limit      int
}

// Instances stores instances and everything their steps commit.
type Instances interface {
	// Commit applies each commit atomically and independently, grouping them
	// into as few transactions as it can; errs[i] is the result of commits[i].
	Commit(ctx context.Context, commits []Commit) (errs []error)
	// ClaimInstance increments the instance's epoch for a new activation and
	// returns the instance with it.
	ClaimInstance(ctx context.Context, tenantID, id string) (Instance, error)
	GetInstance(ctx context.Context, tenantID, id string) (Instance, error)
	ListInstances(ctx context.Context, tenantID string, f InstanceFilter) ([]Instance, error)
	ListSteps(ctx context.Context, tenantID, instanceID string) ([]Step, error)
	// ActiveInstance returns the customer's non-terminal instance of the journey.
	ActiveInstance(ctx context.Context, tenantID, journeyID, customerID string) (Instance, error)
	// LastInstance returns the customer's most recent instance of the journey, of any status.
	LastInstance(ctx context.Context, tenantID, journeyID, customerID string) (Instance, error)
	// CustomerInstances returns the customer's non-terminal instances.
	CustomerInstances(ctx context.Context, tenantID, customerID string) ([]Instance, error)
	// WaitingFor returns the ids of the instances waiting for the customer's event type.
	WaitingFor(ctx context.Context, tenantID, customerID, eventType string) ([]string, error)
	// ClaimDueTimers leases to the caller, until now+lease, up to limit
	// timers of any tenant due at or before now and not leased at now, the
	// earliest first, and returns them earliest first. No other claim
	// returns them while the lease runs; a timer still there then can be
	// claimed again. A commit that replaces an instance's timers writes
	// them unleased. A limit of 0 or less claims every one.
	ClaimDueTimers(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Timer, error)
	// Recoverable returns running instances of any tenant last updated at or
	// before updatedBefore, in id order after the id after, for re-driving:
	// an instance running but untouched since then was left behind by a
	// process that stopped or died.
	Recoverable(ctx context.Context, updatedBefore time.Time, after string, limit int) ([]Instance, error)
	// CountByVersion counts the journey's instances by version and status.
	CountByVersion(ctx context.Context, tenantID, journeyID string) ([]VersionCount, error)
	// CountAtNodes counts the journey version's instances that have not
	// ended at each node where one of their tokens is.
	CountAtNodes(ctx context.Context, tenantID, journeyID string, version int) (map[string]int, error)
	// ActiveKeys returns the journey version's instances that have not
	// ended (held and paused ones included), in id order after the id
	// after, at most limit: the instances a migration moves.
	ActiveKeys(ctx context.Context, tenantID, journeyID string, version int, after string, limit int) ([]InstanceKey, error)
	// CountSends counts the customer's deliveries on a channel ("" for all)
	// created at or after since, skipped ones excluded.
	CountSends(ctx context.Context, tenantID, customerID, channel string, since time.Time) (int, error)
}

// VersionCount is how many instances of a journey version have a status.
type VersionCount struct {
	Version int    `json:"version"`
	Status  string `json:"status"`
	Count   int    `json:"count"`
}

// DeliveryCount is how many deliveries are on a channel in a status.
type DeliveryCount struct {
	Channel string `json:"channel"`
	Status  string `json:"status"`
	Count   int    `json:"count"`
}

// DeliveryEvent is a status a provider reported for a delivery.
type DeliveryEvent struct {
	TenantID   string
	DeliveryID string
	// Provider and MessageID find the delivery when DeliveryID is empty.
	Provider   string
	MessageID  string
	Type       string
	EventID    string
	Reason     string
	At         time.Time
	ReceivedAt time.Time
}

// DeliveryFilter narrows ListDeliveries.
type DeliveryFilter struct {
	JourneyID  string
	InstanceID string
	CustomerID string
	Channel    string
	Status     string
	After      string
	Limit      int
}

// Deliveries is the outbox.
type Deliveries interface {
	// ClaimDeliveries leases to the caller, until now+lease, up to limit
	// pending deliveries of any tenant not leased at now, the oldest first,
	// and returns them oldest first. No other claim returns them while the
	// lease runs; a delivery still pending then can be claimed again. A
	// limit of 0 or less claims every one.
	ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Delivery, error)
	// ReleaseDeliveries gives up the leases of claimed deliveries that were
	// not sent (a process draining), so another claim takes them at once.
	ReleaseDeliveries(ctx context.Context, ds []Delivery) error
	// BeginAttempt records, before a send, that d's attempt d.Attempts
	// is under way (d.AttemptStarted) with d.Provider. It fails with
	// ErrConflict unless d is still pending under the claim d.ClaimUntil
	// names, so that no send starts once another claim has the delivery.
	BeginAttempt(ctx context.Context, d Delivery) error
	// UpdateDelivery records the outcome of a send attempt, a skip or a
	// deferral: status, provider, message id, error, attempts, ClaimUntil,
	// AttemptStarted, SentAt and TemplateVersion. Only a pending delivery takes an outcome
	// other than sent; a delivery decided meanwhile is ErrNotFound. Sent
	// becomes bounced, failed or delivered when the provider reported so
	// before the send was recorded.
	UpdateDelivery(ctx context.Context, d Delivery) error
	GetDelivery(ctx context.Context, tenantID, id string) (Delivery, error)
	ListDeliveries(ctx context.Context, tenantID string, f DeliveryFilter) ([]Delivery, error)
	// CountDeliveries counts the deliveries f selects (After and Limit
	// aside) by channel and status; opened and clicked count deliveries
	// reported opened or clicked, whatever their status.
	CountDeliveries(ctx context.Context, tenantID string, f DeliveryFilter) ([]DeliveryCount, error)
	// RecordDeliveryEvent finds the delivery ev names (by DeliveryID, else
	// by Provider and MessageID) and, unless the same event was recorded
	// before, records it and stores what apply makes of the delivery, in
	// one transaction. It returns the delivery as stored and whether the
	// event was new; an unknown delivery is ErrNotFound.
	RecordDeliveryEvent(ctx context.Context, ev DeliveryEvent, apply func(Delivery) Delivery) (Delivery, bool, error)
}
