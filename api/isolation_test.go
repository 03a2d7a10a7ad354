package api_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/kalcifer/kalcifer/store"
)

// TestRuntimeTenantIsolation gives another tenant a customer, a journey, an
// instance and a delivery, and checks that no new route shows or changes
// them to this tenant: ids are 404 with the code of the resource, filters
// find nothing, and an equal external id is a customer of its own.
func TestRuntimeTenantIsolation(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		other, otherKey := e.newTenant("other")
		theirs := ok[store.Customer](e.as(otherKey, "PUT", "/customers/shared", map[string]any{"name": "Theirs", "tags": []string{"vip"}}), http.StatusCreated)
		j := ok[journeyJSON](e.as(otherKey, "POST", "/journeys", map[string]any{"name": "theirs"}), http.StatusCreated)
		in := e.seed(other.ID, store.Instance{JourneyID: j.ID, Version: 1, CustomerID: theirs.ID, Status: store.InstanceWaiting, Nodes: []string{"wait_1"}},
			[]store.Step{step("entry_1", "event_entry", "completed")},
			store.Delivery{Key: "k", NodeID: "email_1", Channel: "email", Payload: json.RawMessage(`{}`)})

		for _, path := range []string{"/customers/" + theirs.ID, "/customers/shared?by=external_id"} {
			e.do("GET", path, nil).fails(http.StatusNotFound, "customer_not_found")
		}
		base := "/customers/" + theirs.ID
		e.do("PATCH", base, map[string]any{"name": "Mine"}).fails(http.StatusNotFound, "customer_not_found")
		e.do("POST", base+"/tags", map[string]any{"remove": []string{"vip"}}).fails(http.StatusNotFound, "customer_not_found")
		e.do("PUT", base+"/preferences", map[string]bool{"email": false}).fails(http.StatusNotFound, "customer_not_found")
		e.do("GET", base+"/events", nil).fails(http.StatusNotFound, "customer_not_found")
		e.do("GET", base+"/instances", nil).fails(http.StatusNotFound, "customer_not_found")
		e.do("GET", "/instances/"+in.ID, nil).fails(http.StatusNotFound, "instance_not_found")
		e.do("GET", "/journeys/"+j.ID+"/instances", nil).fails(http.StatusNotFound, "journey_not_found")
		for _, path := range []string{
			"/customers?limit=10", "/customers?tag=vip",
			"/instances?limit=10", "/instances?journey_id=" + j.ID, "/instances?customer_id=" + theirs.ID,
			"/deliveries?limit=10", "/deliveries?instance_id=" + in.ID, "/deliveries?customer_id=" + theirs.ID,
		} {
			if got := ids(e, path); len(got) != 0 {
				t.Errorf("%s shows another tenant's %v", path, got)
			}
		}

		mine := e.upsert("shared", map[string]any{"name": "Mine"}, http.StatusCreated)
		if mine.ID == theirs.ID || mine.TenantID != e.tenant.ID {
			t.Fatalf("an external id of another tenant resolved to its customer: %+v", mine)
		}
		e.do("PATCH", "/tenant", map[string]any{"settings": map[string]any{"reject_unknown_customers": true}})
		if got := ok[store.Customer](e.as(otherKey, "GET", "/customers/"+theirs.ID, nil), http.StatusOK); !reflect.DeepEqual(got, theirs) {
			t.Fatalf("the other tenant's customer changed: %+v", got)
		}
		if got := ids(e.with(t), "/deliveries?customer_id="+mine.ID); len(got) != 0 {
			t.Fatalf("deliveries of a new customer: %v", got)
		}
		if tenant, err := e.store.Tenants().GetTenant(t.Context(), other.ID); err != nil || tenant.Settings.RejectUnknownCustomers {
			t.Fatalf("the other tenant's settings changed: %+v %v", tenant, err)
		}
		theirList := ok[struct{ Data []store.Instance }](e.as(otherKey, "GET", "/instances", nil), http.StatusOK)
		if len(theirList.Data) != 1 || theirList.Data[0].ID != in.ID {
			t.Fatalf("the owner does not see its instance: %+v", theirList.Data)
		}
	})
}
