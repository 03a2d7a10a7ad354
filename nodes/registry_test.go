package nodes

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kalcifer/kalcifer/journey"
)

var wantTypes = map[journey.Category][]string{
	journey.CategoryEntry:   {"event_entry", "segment_entry", "webhook_entry"},
	journey.CategoryChannel: {"call_webhook", "send_email", "send_push", "send_sms", "send_whatsapp"},
	journey.CategoryLogic:   {"ab_split", "condition", "frequency_cap", "wait", "wait_for_event", "wait_until"},
	journey.CategoryData:    {"add_tag", "custom_code", "remove_tag", "update_profile"},
	journey.CategoryExit:    {"goal_reached", "journey_exit"},
}

func TestDefaultHasTheTwentyTypes(t *testing.T) {
	r := Default()
	if r != Default() {
		t.Error("Default() builds a new registry on every call")
	}
	got := map[journey.Category][]string{}
	for _, info := range r.Catalog() {
		got[info.Category] = append(got[info.Category], info.Type)
	}
	total := 0
	for cat, names := range wantTypes {
		if !slices.Equal(got[cat], names) {
			t.Errorf("category %s: got %v, want %v", cat, got[cat], names)
		}
		total += len(got[cat])
		for _, name := range names {
			typ, ok := r.Get(name)
			if !ok {
				t.Errorf("Get(%q) not found", name)
				continue
			}
			if typ.Name() != name || typ.Category() != cat {
				t.Errorf("Get(%q) = %s in %s", name, typ.Name(), typ.Category())
			}
			if nt, ok := r.Lookup(name); !ok || nt.Category() != cat {
				t.Errorf("Lookup(%q) = %v, %v", name, nt, ok)
			}
		}
	}
	if total != 20 || len(r.Catalog()) != 20 {
		t.Errorf("got %d types in known categories and %d in the catalog, want 20", total, len(r.Catalog()))
	}
	if _, ok := r.Lookup("send_fax"); ok {
		t.Error("Lookup found an unknown type")
	}
}

func TestCatalogOrder(t *testing.T) {
	rank := map[journey.Category]int{"entry": 0, "channel": 1, "logic": 2, "data": 3, "exit": 4}
	cat := Default().Catalog()
	if cat[0].Type != "event_entry" || cat[len(cat)-1].Type != "journey_exit" {
		t.Errorf("catalog runs from %s to %s, want event_entry to journey_exit", cat[0].Type, cat[len(cat)-1].Type)
	}
	for i := 1; i < len(cat); i++ {
		a, b := cat[i-1], cat[i]
		if rank[a.Category] > rank[b.Category] || (a.Category == b.Category && a.Type >= b.Type) {
			t.Errorf("catalog lists %s/%s before %s/%s", a.Category, a.Type, b.Category, b.Type)
		}
	}
}

func TestCatalogEntries(t *testing.T) {
	wantKeys := map[string][]string{
		"condition":      {"true", "false"},
		"frequency_cap":  {"allowed", "capped"},
		"wait_for_event": {"event_received", "timed_out"},
	}
	wantDynamic := map[string]bool{"wait_for_event": true, "ab_split": true, "custom_code": true}
	for _, info := range Default().Catalog() {
		if info.Description == "" {
			t.Errorf("%s has no description", info.Type)
		}
		want := wantKeys[info.Type]
		if want == nil {
			want = []string{}
		}
		if !slices.Equal(info.BranchKeys, want) {
			t.Errorf("%s branch keys = %v, want %v", info.Type, info.BranchKeys, want)
		}
		if info.DynamicBranches != wantDynamic[info.Type] {
			t.Errorf("%s dynamic branches = %v", info.Type, info.DynamicBranches)
		}
	}
	if _, err := json.Marshal(Default().Catalog()); err != nil {
		t.Fatalf("marshal catalog: %v", err)
	}
}

type schemaDoc struct {
	Schema               string                     `json:"$schema"`
	Title                string                     `json:"title"`
	Type                 string                     `json:"type"`
	AdditionalProperties *bool                      `json:"additionalProperties"`
	Required             []string                   `json:"required"`
	Properties           map[string]json.RawMessage `json:"properties"`
}

func TestSchemasAreValidAndCompile(t *testing.T) {
	for _, info := range Default().Catalog() {
		var doc schemaDoc
		if err := json.Unmarshal(info.Schema, &doc); err != nil {
			t.Errorf("%s: schema is not valid JSON: %v", info.Type, err)
			continue
		}
		if doc.Schema != "https://json-schema.org/draft/2020-12/schema" || doc.Type != "object" || doc.Title == "" {
			t.Errorf("%s: want a titled draft 2020-12 object schema, got %+v", info.Type, doc)
		}
		if doc.AdditionalProperties == nil || *doc.AdditionalProperties {
			t.Errorf("%s: additionalProperties must be false", info.Type)
		}
		for _, req := range doc.Required {
			if _, ok := doc.Properties[req]; !ok {
				t.Errorf("%s: required %q is not a property", info.Type, req)
			}
		}
		for name, raw := range doc.Properties {
			var prop struct {
				Title string `json:"title"`
			}
			if err := json.Unmarshal(raw, &prop); err != nil || prop.Title == "" {
				t.Errorf("%s: property %s has no title", info.Type, name)
			}
		}
		if _, err := compileSchema(info.Type, string(info.Schema)); err != nil {
			t.Errorf("%s: %v", info.Type, err)
		}
	}
}

// Every default the editor pre-fills must itself pass validation.
func TestSchemaDefaultsAreValid(t *testing.T) {
	for _, info := range Default().Catalog() {
		var doc struct {
			Properties map[string]struct {
				Default json.RawMessage `json:"default"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(info.Schema, &doc); err != nil {
			t.Fatalf("%s: %v", info.Type, err)
		}
		typ, _ := Default().Get(info.Type)
		for name, prop := range doc.Properties {
			if prop.Default == nil {
				continue
			}
			config, _ := json.Marshal(map[string]json.RawMessage{name: prop.Default})
			for _, p := range typ.ValidateConfig(config) {
				if p.Field == "/"+name || strings.HasPrefix(p.Field, "/"+name+"/") {
					t.Errorf("%s: default of %s is invalid: %s", info.Type, name, p.Message)
				}
			}
		}
	}
}

func TestSchemaIsACopy(t *testing.T) {
	typ, _ := Default().Get("wait")
	s := typ.Schema()
	s[0] = 'X'
	if typ.Schema()[0] != '{' {
		t.Error("changing a returned schema changed the type's schema")
	}
}

func TestConcurrentValidation(t *testing.T) {
	var wg sync.WaitGroup
	for range 8 {
		for _, info := range Default().Catalog() {
			typ, _ := Default().Get(info.Type)
			wg.Go(func() {
				typ.ValidateConfig(json.RawMessage(`{"x": 1}`))
				typ.Branches(nil)
				typ.Terminal(nil)
			})
		}
	}
	wg.Wait()
}
