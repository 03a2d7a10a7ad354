package api_test

import (
	"cmp"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/channels/status"
	"github.com/kalcifer/kalcifer/store"
)

type countsJSON struct {
	Counts []store.DeliveryCount `json:"counts"`
	Total  int                   `json:"total"`
}

func TestDeliveryDetailAndCounts(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		f := e.seedRuntime()
		all := ok[struct{ Data []store.Delivery }](e.do("GET", "/deliveries", nil), http.StatusOK)
		byKey := map[string]store.Delivery{}
		for _, d := range all.Data {
			byKey[d.Key] = d
		}
		sms := byKey["i2:sms_1:1"]
		got := ok[store.Delivery](e.do("GET", "/deliveries/"+sms.ID, nil), http.StatusOK)
		if !reflect.DeepEqual(got, sms) || got.Channel != "sms" || got.Status != store.DeliverySent || got.InstanceID != f.i2.ID {
			t.Fatalf("delivery %+v, listed as %+v", got, sms)
		}
		e.do("GET", "/deliveries/dlv_nope", nil).fails(http.StatusNotFound, "delivery_not_found")

		// An open reported for the SMS counts as an engagement, not as a
		// delivery of its own.
		at := start.Add(time.Hour)
		ev := store.DeliveryEvent{TenantID: e.tenant.ID, DeliveryID: sms.ID, Type: "opened", EventID: "o1", At: at, ReceivedAt: at}
		if _, _, err := e.store.Deliveries().RecordDeliveryEvent(t.Context(), ev, func(d store.Delivery) store.Delivery { return status.Apply(d, ev) }); err != nil {
			t.Fatal(err)
		}
		opened := ok[store.Delivery](e.do("GET", "/deliveries/"+sms.ID, nil), http.StatusOK)
		if opened.Status != store.DeliveryDelivered || opened.OpenedAt == nil || !opened.OpenedAt.Equal(at) || opened.DeliveredAt == nil {
			t.Fatalf("opened delivery %+v", opened)
		}
		var raw map[string]any
		if err := json.Unmarshal(e.do("GET", "/deliveries/"+sms.ID, nil).body, &raw); err != nil || raw["opened_at"] == nil || raw["delivered_at"] == nil {
			t.Fatalf("delivery JSON %v (%v)", raw, err)
		}

		for _, tc := range []struct {
			query string
			want  []store.DeliveryCount
			total int
		}{
			{"", []store.DeliveryCount{{Channel: "email", Status: "failed", Count: 1}, {Channel: "email", Status: "pending", Count: 1},
				{Channel: "sms", Status: "delivered", Count: 1}, {Channel: "sms", Status: "opened", Count: 1}}, 3},
			{"?channel=email", []store.DeliveryCount{{Channel: "email", Status: "failed", Count: 1}, {Channel: "email", Status: "pending", Count: 1}}, 2},
			{"?journey_id=" + f.j2.ID, []store.DeliveryCount{{Channel: "email", Status: "failed", Count: 1}}, 1},
			{"?customer_id=" + f.c2.ID + "&status=delivered", []store.DeliveryCount{{Channel: "sms", Status: "delivered", Count: 1}, {Channel: "sms", Status: "opened", Count: 1}}, 1},
			{"?instance_id=" + f.i1.ID, []store.DeliveryCount{{Channel: "email", Status: "pending", Count: 1}}, 1},
			{"?channel=push", []store.DeliveryCount{}, 0},
		} {
			got := ok[countsJSON](e.do("GET", "/deliveries/counts"+tc.query, nil), http.StatusOK)
			slices.SortFunc(got.Counts, func(a, b store.DeliveryCount) int {
				return cmp.Or(cmp.Compare(a.Channel, b.Channel), cmp.Compare(a.Status, b.Status))
			})
			if !slices.Equal(got.Counts, tc.want) || got.Total != tc.total {
				t.Errorf("counts%s: %+v total %d, want %+v total %d", tc.query, got.Counts, got.Total, tc.want, tc.total)
			}
		}
		for _, q := range []string{"channel=fax", "status=opened", "channel=Email"} {
			e.do("GET", "/deliveries/counts?"+q, nil).fails(http.StatusBadRequest, "invalid_parameter")
			e.do("GET", "/deliveries?"+q, nil).fails(http.StatusBadRequest, "invalid_parameter")
		}
		if got := ids(e, "/deliveries?channel=sms"); !slices.Equal(got, []string{sms.ID}) {
			t.Fatalf("channel=sms lists %v", got)
		}
		if got := ids(e, "/deliveries?channel=webhook"); len(got) != 0 {
			t.Fatalf("channel=webhook lists %v", got)
		}

		// Another tenant's deliveries are unknown here and not counted.
		_, otherKey := e.newTenant("other")
		e.as(otherKey, "GET", "/deliveries/"+sms.ID, nil).fails(http.StatusNotFound, "delivery_not_found")
		if r := e.as(otherKey, "GET", "/deliveries/counts", nil); r.status != http.StatusOK || string(r.body) != `{"counts":[],"total":0}`+"\n" {
			t.Fatalf("another tenant's counts: %d %s", r.status, r.body)
		}
	})
}
