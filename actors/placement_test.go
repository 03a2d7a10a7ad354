package actors

import "testing"

// An instance's grain is placed with its customer's grain; other grains by their own identity.
func TestPlaceWithCustomer(t *testing.T) {
	id := instanceIdentity("ten_1", "cus_2", "ins_3")
	if tenant, customer, instance := splitInstanceIdentity(id); tenant != "ten_1" || customer != "cus_2" || instance != "ins_3" {
		t.Fatalf("split %q = %q %q %q", id, tenant, customer, instance)
	}
	if kind, with := placeWithCustomer(KindInstance, id); kind != KindCustomer || with != identity("ten_1", "cus_2") {
		t.Fatalf("instance placed with %s %s, want its customer's grain", kind, with)
	}
	for _, kind := range []string{KindCustomer, KindJourney} {
		if k, with := placeWithCustomer(kind, "ten_1/x_9"); k != kind || with != "ten_1/x_9" {
			t.Fatalf("%s placed with %s %s, want itself", kind, k, with)
		}
	}
}
