package nodes

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestMatchProperties(t *testing.T) {
	props := map[string]any{"n": 3.0, "s": "x", "m": map[string]any{"a": []any{1.0}}}
	for _, tt := range []struct {
		want map[string]any
		ok   bool
	}{
		{nil, true},
		{map[string]any{"n": 3}, true},
		{map[string]any{"n": int64(3), "s": "x"}, true},
		{map[string]any{"m": map[string]any{"a": []any{1}}}, true},
		{map[string]any{"missing": nil}, true},
		{map[string]any{"n": "3"}, false},
		{map[string]any{"s": nil}, false},
		{map[string]any{"m": map[string]any{}}, false},
	} {
		if got := MatchProperties(props, tt.want); got != tt.ok {
			t.Errorf("MatchProperties(%v) = %v", tt.want, got)
		}
	}
}

func TestProfileChangeMergeAndApply(t *testing.T) {
	p := ProfileChange{Set: map[string]any{"a": 1}, AddTags: []string{"x"}, RemoveTags: []string{"y"}}
	p.Merge(ProfileChange{Set: map[string]any{"a": 2, "email": "e@x"}, AddTags: []string{"y"}, RemoveTags: []string{"x"}})
	want := ProfileChange{Set: map[string]any{"a": 2, "email": "e@x"}, AddTags: []string{"y"}, RemoveTags: []string{"x"}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("merged %+v", p)
	}
	c := Customer{Properties: map[string]any{"gone": 1}, Tags: []string{"x"}}
	orig := c.Clone()
	c.Apply(ProfileChange{Set: map[string]any{"email": "e@x", "timezone": nil, "gone": nil, "n": 5}, AddTags: []string{"y", "y"}, RemoveTags: []string{"x"}})
	if c.Email != "e@x" || c.Properties["n"] != 5 || c.Properties["gone"] != nil || !slices.Equal(c.Tags, []string{"y"}) {
		t.Fatalf("applied %+v", c)
	}
	if orig.Properties["gone"] != 1 || !slices.Equal(orig.Tags, []string{"x"}) {
		t.Fatal("Clone shares properties or tags")
	}
	if prof := c.Profile(); prof["email"] != "e@x" || !reflect.DeepEqual(prof["tags"], []any{"y"}) {
		t.Fatalf("profile %v", prof)
	}
}

func TestWaitRefusesEventsFromBeforeItBegan(t *testing.T) {
	began := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	w := Wait{EventType: "paid", StartedAt: began}
	for _, tc := range []struct {
		received time.Time
		want     bool
	}{
		{began.Add(-time.Second), false},
		{began, true},
		{began.Add(time.Minute), true},
		{time.Time{}, true},
	} {
		e := &Event{ID: "e", Type: "paid", ReceivedAt: tc.received}
		if got := w.Accepts(e); got != tc.want {
			t.Errorf("event received %v for a wait begun %v: accepts %v, want %v", tc.received, began, got, tc.want)
		}
	}
}
