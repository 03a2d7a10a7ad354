package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

type customerPage struct {
	Data      []store.Customer `json:"data"`
	NextAfter string           `json:"next_after"`
}

// upsert creates or updates a customer and asserts the status that says which.
func (e *env) upsert(externalID string, body any, status int) store.Customer {
	e.t.Helper()
	return ok[store.Customer](e.do("PUT", "/customers/"+externalID, body), status)
}

func (e *env) createCustomer(externalID string) store.Customer {
	e.t.Helper()
	return e.upsert(externalID, map[string]any{}, http.StatusCreated)
}

// field is the field an invalid_field or missing_field error names.
func (a apiError) field() string {
	var d struct{ Field, Parameter string }
	_ = json.Unmarshal(a.Error.Details, &d)
	return d.Field + d.Parameter
}

func TestCustomerUpsertMerges(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		created := e.upsert("u1", map[string]any{
			"email": "ada@example.com", "name": "Ada", "timezone": "Europe/Paris",
			"properties":  map[string]any{"plan": "pro", "age": 36, "address": map[string]any{"city": "London"}},
			"tags":        []string{"vip"},
			"preferences": map[string]bool{"sms": false},
			"push_tokens": []string{"tok1"},
		}, http.StatusCreated)
		if !strings.HasPrefix(created.ID, "cus_") || created.ExternalID != "u1" || created.TenantID != e.tenant.ID ||
			created.Email != "ada@example.com" || created.Timezone != "Europe/Paris" || created.Properties["age"] != 36.0 ||
			!slices.Equal(created.Tags, []string{"vip"}) || !reflect.DeepEqual(created.Preferences, map[string]bool{"sms": false}) ||
			!slices.Equal(created.PushTokens, []string{"tok1"}) || !created.CreatedAt.Equal(start) {
			t.Fatalf("created %+v", created)
		}

		e.clock.Advance(time.Minute)
		updated := e.upsert("u1", map[string]any{
			"phone":       "+33600000000",
			"properties":  map[string]any{"plan": "free", "age": nil, "country": "FR"},
			"tags":        []string{"beta", "vip"},
			"preferences": map[string]bool{"email": false, "sms": true},
		}, http.StatusOK)
		wantProps := map[string]any{"plan": "free", "country": "FR", "address": map[string]any{"city": "London"}}
		if updated.ID != created.ID || updated.Email != "ada@example.com" || updated.Name != "Ada" || updated.Phone != "+33600000000" ||
			!reflect.DeepEqual(updated.Properties, wantProps) || !slices.Equal(updated.Tags, []string{"vip", "beta"}) ||
			!reflect.DeepEqual(updated.Preferences, map[string]bool{"sms": true, "email": false}) ||
			!slices.Equal(updated.PushTokens, []string{"tok1"}) ||
			!updated.CreatedAt.Equal(start) || !updated.UpdatedAt.Equal(start.Add(time.Minute)) {
			t.Fatalf("updated %+v", updated)
		}
		if got := ok[store.Customer](e.do("GET", "/customers/"+created.ID, nil), http.StatusOK); !reflect.DeepEqual(got, updated) {
			t.Fatalf("get %+v, want %+v", got, updated)
		}
		e.upsert("u1", map[string]any{"push_tokens": []string{}, "email": ""}, http.StatusOK)
		cleared := ok[store.Customer](e.do("GET", "/customers/u1?by=external_id", nil), http.StatusOK)
		if cleared.ID != created.ID || cleared.Email != "" || len(cleared.PushTokens) != 0 || cleared.Name != "Ada" {
			t.Fatalf("cleared %+v", cleared)
		}
		if other := e.createCustomer("u2"); other.ID == created.ID {
			t.Fatalf("a second external id reused customer %s", other.ID)
		}
	})
}

func TestCustomerLookupAndPatch(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		ada := e.upsert("ada@example.com", map[string]any{"name": "Ada"}, http.StatusCreated)
		if got := ok[store.Customer](e.do("GET", "/customers/ada@example.com?by=external_id", nil), http.StatusOK); got.ID != ada.ID {
			t.Fatalf("by external id: %+v", got)
		}
		if got := ok[store.Customer](e.do("GET", "/customers/"+ada.ID+"?by=id", nil), http.StatusOK); got.ID != ada.ID {
			t.Fatalf("by id: %+v", got)
		}
		e.do("GET", "/customers/ada@example.com", nil).fails(http.StatusNotFound, "customer_not_found")
		e.do("GET", "/customers/"+ada.ID+"?by=email", nil).fails(http.StatusBadRequest, "invalid_parameter")

		// An external id with a slash or a space must be escaped in the path,
		// and is the same id however it was escaped.
		slashed := e.upsert("org%2F42%20x", map[string]any{}, http.StatusCreated)
		if slashed.ExternalID != "org/42 x" {
			t.Fatalf("escaped external id stored as %q", slashed.ExternalID)
		}
		e.upsert("%6Frg%2f42%20x", map[string]any{"name": "again"}, http.StatusOK)
		if got := ok[store.Customer](e.do("GET", "/customers/org%2f42%20x?by=external_id", nil), http.StatusOK); got.ID != slashed.ID || got.Name != "again" {
			t.Fatalf("lookup of escaped id: %+v", got)
		}

		patched := ok[store.Customer](e.do("PATCH", "/customers/"+ada.ID, map[string]any{
			"name": "Ada L.", "properties": map[string]any{"plan": "pro"}, "tags": []string{"a"}}), http.StatusOK)
		if patched.Name != "Ada L." || patched.Properties["plan"] != "pro" || !slices.Equal(patched.Tags, []string{"a"}) {
			t.Fatalf("patched %+v", patched)
		}
		byExternal := ok[store.Customer](e.do("PATCH", "/customers/ada@example.com?by=external_id",
			map[string]any{"timezone": "America/New_York"}), http.StatusOK)
		if byExternal.ID != ada.ID || byExternal.Timezone != "America/New_York" || byExternal.Name != "Ada L." {
			t.Fatalf("patched by external id %+v", byExternal)
		}

		tagged := ok[store.Customer](e.do("POST", "/customers/"+ada.ID+"/tags",
			map[string]any{"add": []string{" b ", "c", "a"}, "remove": []string{"a", "zzz"}}), http.StatusOK)
		if !slices.Equal(tagged.Tags, []string{"b", "c"}) {
			t.Fatalf("tags %v, want [b c]", tagged.Tags)
		}
		ok[store.Customer](e.do("PUT", "/customers/"+ada.ID+"/preferences", map[string]bool{"sms": false, "push": true}), http.StatusOK)
		prefs := ok[store.Customer](e.do("PUT", "/customers/ada@example.com/preferences?by=external_id", map[string]bool{"sms": true, "email": false}), http.StatusOK)
		if !reflect.DeepEqual(prefs.Preferences, map[string]bool{"sms": true, "push": true, "email": false}) {
			t.Fatalf("preferences %v", prefs.Preferences)
		}
		if got := ok[store.Customer](e.do("GET", "/customers/"+ada.ID, nil), http.StatusOK); !reflect.DeepEqual(got, prefs) {
			t.Fatalf("stored %+v, want %+v", got, prefs)
		}

		for _, unknown := range [][2]string{{"/customers/cus_nope", ""}, {"/customers/nope", "?by=external_id"}} {
			path, query := unknown[0], unknown[1]
			e.do("PATCH", path+query, map[string]any{"name": "x"}).fails(http.StatusNotFound, "customer_not_found")
			e.do("POST", path+"/tags"+query, map[string]any{"add": []string{"x"}}).fails(http.StatusNotFound, "customer_not_found")
			e.do("PUT", path+"/preferences"+query, map[string]bool{"sms": true}).fails(http.StatusNotFound, "customer_not_found")
			e.do("GET", path+"/events"+query, nil).fails(http.StatusNotFound, "customer_not_found")
			e.do("GET", path+"/instances"+query, nil).fails(http.StatusNotFound, "customer_not_found")
		}
		if _, err := e.store.Customers().GetCustomerByExternalID(t.Context(), e.tenant.ID, "nope"); err == nil {
			t.Fatal("a patch of an unknown customer created one")
		}
	})
}

func TestCustomerTimezone(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		e.upsert("tz", map[string]any{"timezone": "Asia/Kolkata"}, http.StatusCreated)
		for _, tz := range []string{"UTC", "America/Argentina/Buenos_Aires", ""} {
			if got := e.upsert("tz", map[string]any{"timezone": tz}, http.StatusOK); got.Timezone != tz {
				t.Fatalf("timezone %q stored as %q", tz, got.Timezone)
			}
		}
		for _, tz := range []string{"Mars/Olympus_Mons", "Local", "../../etc/passwd", "europe/paris ", "+02:00"} {
			got := e.do("PUT", "/customers/other", map[string]any{"timezone": tz}).fails(http.StatusBadRequest, "invalid_field")
			if got.field() != "timezone" {
				t.Fatalf("timezone %q: error names %q", tz, got.field())
			}
			e.do("PATCH", "/customers/tz?by=external_id", map[string]any{"timezone": tz}).fails(http.StatusBadRequest, "invalid_field")
		}
		e.do("GET", "/customers/other?by=external_id", nil).fails(http.StatusNotFound, "customer_not_found")
		if got := ok[store.Customer](e.do("GET", "/customers/tz?by=external_id", nil), http.StatusOK); got.Timezone != "" {
			t.Fatalf("refused timezone changed the customer: %q", got.Timezone)
		}
	})
}

// TestCustomerBadInput sends bodies and parameters each refused with its code
// and the field it names; none creates a customer.
func TestCustomerBadInput(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		c := e.createCustomer("bad")
		deep := strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70)
		for _, tc := range []struct {
			method, path, body string
			status             int
			code, field        string
		}{
			{"PUT", "/customers/x", ``, 400, "invalid_json", ""},
			{"PUT", "/customers/x", `[]`, 400, "invalid_json", ""},
			{"PUT", "/customers/x", `{"emial":"a@b.c"}`, 400, "unknown_field", "emial"},
			{"PUT", "/customers/x", `{"email":1}`, 400, "invalid_field", "email"},
			{"PUT", "/customers/x", `{"tags":"vip"}`, 400, "invalid_field", "tags"},
			{"PUT", "/customers/x", `{"tags":["a"," "]}`, 400, "invalid_field", "tags[1]"},
			{"PUT", "/customers/x", `{"push_tokens":[""]}`, 400, "invalid_field", "push_tokens[0]"},
			{"PUT", "/customers/x", `{"properties":[1]}`, 400, "invalid_field", "properties"},
			{"PUT", "/customers/x", `{"properties":{"n":1e999}}`, 400, "invalid_field", "properties"},
			{"PUT", "/customers/x", `{"properties":{"a":"x\u0000y"}}`, 400, "invalid_field", "properties.a"},
			{"PUT", "/customers/x", `{"properties":{"a\u0000":1}}`, 400, "invalid_field", "properties.a\x00"},
			{"PUT", "/customers/x", `{"properties":` + deep + `}`, 400, "invalid_field", ""},
			{"PUT", "/customers/x", `{"name":"\u0000"}`, 400, "invalid_field", "name"},
			{"PUT", "/customers/x", `{"preferences":{"fax":true}}`, 400, "unknown_field", "fax"},
			{"PUT", "/customers/x", `{"preferences":{"sms":"no"}}`, 400, "invalid_field", "preferences.sms"},
			{"PUT", "/customers/" + strings.Repeat("x", 256), `{}`, 400, "invalid_parameter", "id"},
			{"PUT", "/customers/%00", `{}`, 400, "invalid_parameter", "id"},
			{"PUT", "/customers/%FF", `{}`, 400, "invalid_parameter", "id"},
			{"PATCH", "/customers/" + c.ID, `{"tags":[""]}`, 400, "invalid_field", "tags[0]"},
			{"POST", "/customers/" + c.ID + "/tags", `{"add":[""]}`, 400, "invalid_field", "add[0]"},
			{"POST", "/customers/" + c.ID + "/tags", `{"remove":"a"}`, 400, "invalid_field", "remove"},
			{"POST", "/customers/" + c.ID + "/tags", `{"tags":["a"]}`, 400, "unknown_field", "tags"},
			{"PUT", "/customers/" + c.ID + "/preferences", `{"fax":true}`, 400, "unknown_field", "fax"},
			{"PUT", "/customers/" + c.ID + "/preferences", `{"sms":1}`, 400, "invalid_field", "sms"},
			{"PUT", "/customers/" + c.ID + "/preferences", `[true]`, 400, "invalid_json", ""},
			{"GET", "/customers?limit=0", ``, 400, "invalid_parameter", "limit"},
			{"GET", "/customers?tag=%00", ``, 400, "invalid_parameter", "tag"},
			{"GET", "/customers/" + c.ID + "/events?limit=201", ``, 400, "invalid_parameter", "limit"},
			{"GET", "/journeys/%00", ``, 400, "invalid_parameter", "id"},
			{"GET", "/journeys?after=%FF", ``, 400, "invalid_parameter", "after"},
			{"POST", "/journeys", `{"name":"a\u0000"}`, 400, "invalid_field", "name"},
		} {
			t.Run(tc.method+" "+tc.path+" "+tc.body, func(t *testing.T) {
				e := e.with(t)
				got := e.do(tc.method, tc.path, tc.body).fails(tc.status, tc.code)
				if tc.field != "" && got.field() != tc.field {
					t.Fatalf("error names %q, want %q: %s", got.field(), tc.field, got.Error.Message)
				}
			})
		}
		list := ok[customerPage](e.do("GET", "/customers", nil), http.StatusOK)
		if len(list.Data) != 1 {
			t.Fatalf("refused requests created customers: %+v", list.Data)
		}
		if got := ok[store.Customer](e.do("GET", "/customers/"+c.ID, nil), http.StatusOK); !reflect.DeepEqual(got, c) {
			t.Fatalf("refused requests changed the customer: %+v", got)
		}
		e.assertServing()
	})
}

func TestCustomerListAndPagination(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		var ids, vips []string
		for i := range 5 {
			e.clock.Advance(time.Millisecond)
			body := map[string]any{}
			if i%2 == 0 {
				body["tags"] = []string{"vip"}
			}
			c := e.upsert(fmt.Sprintf("u%d", i), body, http.StatusCreated)
			ids = append(ids, c.ID)
			if i%2 == 0 {
				vips = append(vips, c.ID)
			}
		}
		slices.Sort(ids)
		slices.Sort(vips)
		if got := pageIDs(e, "/customers?limit=2", 2); !slices.Equal(got, ids) {
			t.Fatalf("paged %v, want %v", got, ids)
		}
		if got := pageIDs(e, "/customers?tag=vip&limit=2", 2); !slices.Equal(got, vips) {
			t.Fatalf("vips %v, want %v", got, vips)
		}
		full := ok[customerPage](e.do("GET", "/customers?limit=5", nil), http.StatusOK)
		if len(full.Data) != 5 || full.NextAfter != "" {
			t.Fatalf("a full last page must not promise another: %d, %q", len(full.Data), full.NextAfter)
		}
		none := ok[customerPage](e.do("GET", "/customers?tag=nobody", nil), http.StatusOK)
		if none.Data == nil || len(none.Data) != 0 {
			t.Fatalf("empty page must be [], got %s", e.do("GET", "/customers?tag=nobody", nil).body)
		}
	})
}

// pageIDs follows next_after from path to the last page, checking that no
// page is longer than size, and returns every id seen in order.
func pageIDs(e *env, path string, size int) []string {
	e.t.Helper()
	var ids []string
	after := ""
	for range 100 {
		p := ok[struct {
			Data []struct {
				ID string `json:"id"`
			} `json:"data"`
			NextAfter string `json:"next_after"`
		}](e.do("GET", path+"&after="+after, nil), http.StatusOK)
		if len(p.Data) > size {
			e.t.Fatalf("%s: page of %d, limit %d", path, len(p.Data), size)
		}
		for _, x := range p.Data {
			ids = append(ids, x.ID)
		}
		if after = p.NextAfter; after == "" {
			return ids
		}
	}
	e.t.Fatalf("%s: pagination does not end", path)
	return nil
}

func TestCustomerEvents(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		c := e.createCustomer("u1")
		var events []store.Event
		for i, typ := range []string{"signed_up", "email_opened", "purchased"} {
			events = append(events, store.Event{CustomerID: c.ID, MessageID: fmt.Sprintf("m%d", i), Type: typ,
				Properties: json.RawMessage(`{"n":` + fmt.Sprint(i) + `}`), Timestamp: start.Add(time.Duration(i) * time.Hour)})
		}
		if _, _, err := e.store.Events().AppendEvents(t.Context(), e.tenant.ID, events); err != nil {
			t.Fatal(err)
		}
		type eventList struct {
			Data []struct {
				Type       string         `json:"type"`
				CustomerID string         `json:"customer_id"`
				Properties map[string]any `json:"properties"`
			} `json:"data"`
		}
		got := ok[eventList](e.do("GET", "/customers/"+c.ID+"/events", nil), http.StatusOK)
		var types []string
		for _, ev := range got.Data {
			types = append(types, ev.Type)
		}
		if !slices.Equal(types, []string{"purchased", "email_opened", "signed_up"}) || got.Data[0].Properties["n"] != 2.0 {
			t.Fatalf("events %+v, want newest first", got.Data)
		}
		newest := ok[eventList](e.do("GET", "/customers/u1/events?by=external_id&limit=1", nil), http.StatusOK)
		if len(newest.Data) != 1 || newest.Data[0].Type != "purchased" {
			t.Fatalf("limit=1: %+v", newest.Data)
		}
		quiet := e.createCustomer("u2")
		if r := e.do("GET", "/customers/"+quiet.ID+"/events", nil); string(r.body) != `{"data":[]}`+"\n" {
			t.Fatalf("no events: %d %s", r.status, r.body)
		}
	})
}

func TestTenantSettings(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		type tenantJSON struct {
			ID       string `json:"id"`
			Name     string `json:"name"`
			Settings struct {
				RejectUnknownCustomers bool `json:"reject_unknown_customers"`
			} `json:"settings"`
		}
		other, otherKey := e.newTenant("other")
		if got := ok[tenantJSON](e.do("GET", "/tenant", nil), http.StatusOK); got.Settings.RejectUnknownCustomers {
			t.Fatalf("default settings %+v", got)
		}
		set := ok[tenantJSON](e.do("PATCH", "/tenant", map[string]any{"settings": map[string]any{"reject_unknown_customers": true}}), http.StatusOK)
		if set.ID != e.tenant.ID || set.Name != "acme" || !set.Settings.RejectUnknownCustomers {
			t.Fatalf("patched %+v", set)
		}
		if got := ok[tenantJSON](e.do("PATCH", "/tenant", map[string]any{"settings": map[string]any{}}), http.StatusOK); !got.Settings.RejectUnknownCustomers {
			t.Fatalf("an empty patch reset the settings: %+v", got)
		}
		if got := ok[tenantJSON](e.do("GET", "/tenant", nil), http.StatusOK); !got.Settings.RejectUnknownCustomers {
			t.Fatalf("stored %+v", got)
		}
		if got := ok[tenantJSON](e.as(otherKey, "GET", "/tenant", nil), http.StatusOK); got.ID != other.ID || got.Settings.RejectUnknownCustomers {
			t.Fatalf("another tenant's settings changed: %+v", got)
		}
		if got := ok[tenantJSON](e.do("PATCH", "/tenant", map[string]any{"settings": map[string]any{"reject_unknown_customers": false}}), http.StatusOK); got.Settings.RejectUnknownCustomers {
			t.Fatalf("turned off: %+v", got)
		}

		e.do("PATCH", "/tenant", `{}`).fails(http.StatusBadRequest, "missing_field")
		e.do("PATCH", "/tenant", `{"settings":null}`).fails(http.StatusBadRequest, "missing_field")
		e.do("PATCH", "/tenant", `{"name":"x","settings":{}}`).fails(http.StatusBadRequest, "unknown_field")
		e.do("PATCH", "/tenant", `{"settings":{"reject_unknown":true}}`).fails(http.StatusBadRequest, "unknown_field")
		if got := e.do("PATCH", "/tenant", `{"settings":{"reject_unknown_customers":"yes"}}`).fails(http.StatusBadRequest, "invalid_field"); got.field() != "settings.reject_unknown_customers" {
			t.Fatalf("error names %q", got.field())
		}
		e.send(request{method: "PATCH", path: "/tenant", body: `{"settings":{}}`, key: new("")}).fails(http.StatusUnauthorized, "missing_api_key")
	})
}
