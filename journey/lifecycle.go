package journey

import "fmt"

// Journey statuses.
const (
	StatusDraft    = "draft"
	StatusActive   = "active"
	StatusPaused   = "paused"
	StatusArchived = "archived"
)

// Lifecycle actions on a journey.
const (
	ActionActivate = "activate"
	ActionPause    = "pause"
	ActionResume   = "resume"
	ActionArchive  = "archive"
)

// transitions is the whole journey state machine: action → from → to.
// Archived is terminal. Publishing a version also makes a draft or paused
// journey active, in the same transaction (store.Journeys.PublishVersion).
var transitions = map[string]map[string]string{
	ActionActivate: {StatusDraft: StatusActive},
	ActionPause:    {StatusActive: StatusPaused},
	ActionResume:   {StatusPaused: StatusActive},
	ActionArchive:  {StatusDraft: StatusArchived, StatusActive: StatusArchived, StatusPaused: StatusArchived},
}

// TransitionError says why an action is not allowed in a status.
type TransitionError struct {
	From, Action string
}

func (e *TransitionError) Error() string {
	if _, known := transitions[e.Action]; !known {
		return fmt.Sprintf("unknown journey action %q", e.Action)
	}
	return fmt.Sprintf("cannot %s a journey that is %s", e.Action, e.From)
}

// Transition returns the status a journey in status from moves to under action.
func Transition(from, action string) (string, error) {
	to, ok := transitions[action][from]
	if !ok {
		return "", &TransitionError{From: from, Action: action}
	}
	return to, nil
}

// Actions lists the lifecycle actions, for routing and documentation.
func Actions() []string {
	return []string{ActionActivate, ActionPause, ActionResume, ActionArchive}
}
