package v1alpha1

import "testing"

func TestParseApproval(t *testing.T) {
	if rec, _ := ParseApproval("  "); rec != nil {
		t.Errorf("empty value: %+v", rec)
	}
	rec, stamped := ParseApproval(`{"approvedBy":"bob","approvedAt":"2026-11-29T12:00:00Z"}`)
	if rec == nil || !stamped || rec.ApprovedBy != "bob" || rec.ApprovedAt.IsZero() {
		t.Errorf("stamp: %+v %v", rec, stamped)
	}
	for _, v := range []string{"approved", `{"approvedBy":""}`, `{"approvedAt":"2026-11-29T12:00:00Z"}`} {
		if rec, stamped := ParseApproval(v); rec == nil || stamped || rec.ApprovedBy != UnverifiedApprover {
			t.Errorf("%q: %+v %v", v, rec, stamped)
		}
	}
}
