package journey

import (
	"errors"
	"testing"
)

func TestTransitionTable(t *testing.T) {
	statuses := []string{StatusDraft, StatusActive, StatusPaused, StatusArchived}
	allowed := map[[2]string]string{
		{StatusDraft, ActionActivate}: StatusActive,
		{StatusActive, ActionPause}:   StatusPaused,
		{StatusPaused, ActionResume}:  StatusActive,
		{StatusDraft, ActionArchive}:  StatusArchived,
		{StatusActive, ActionArchive}: StatusArchived,
		{StatusPaused, ActionArchive}: StatusArchived,
	}
	for _, from := range statuses {
		for _, action := range append(Actions(), "explode") {
			to, err := Transition(from, action)
			want, ok := allowed[[2]string{from, action}]
			if ok {
				if err != nil || to != want {
					t.Errorf("%s %s: got %q, %v; want %q", action, from, to, err, want)
				}
				continue
			}
			var te *TransitionError
			if !errors.As(err, &te) || te.From != from || te.Action != action || err.Error() == "" {
				t.Errorf("%s %s: want a TransitionError, got %q, %v", action, from, to, err)
			}
		}
	}
}

func TestArchivedIsTerminal(t *testing.T) {
	for _, action := range Actions() {
		if _, err := Transition(StatusArchived, action); err == nil {
			t.Errorf("%s moved an archived journey", action)
		}
	}
}
