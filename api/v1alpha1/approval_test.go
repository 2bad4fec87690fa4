package v1alpha1

import (
	"strings"
	"testing"
)

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

func TestApproversDescribe(t *testing.T) {
	for _, c := range []struct {
		a    Approvers
		want string
	}{
		{Approvers{Users: []string{"bob"}}, "user bob"},
		{Approvers{Groups: []string{"finance-controllers"}}, "a member of group finance-controllers"},
		{Approvers{Users: []string{"bob", "carol"}, Groups: []string{"sre"}}, "users bob, carol or a member of group sre"},
		{Approvers{Users: []string{"a", "b", "c", "d", "e"}, Groups: []string{"x", "y"}}, "users a, b, c and 2 more or a member of groups x, y"},
		{Approvers{}, "an approver"},
	} {
		if got := c.a.Describe(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.a, got, c.want)
		}
	}
}

func TestParseRejection(t *testing.T) {
	rec, stamped := ParseRejection(`{"rejectedBy":"bob","rejectedAt":"2026-12-01T12:00:00Z","reason":"the change window\nis closed"}`)
	if !stamped || rec.RejectedBy != "bob" || rec.RejectedAt.IsZero() || rec.Reason != "the change window is closed" {
		t.Errorf("stamp: %+v %v", rec, stamped)
	}
	for v, reason := range map[string]string{"": "", "not today": "not today", `{"rejectedBy":""}`: `{"rejectedBy":""}`} {
		if rec, stamped := ParseRejection(v); stamped || rec.RejectedBy != UnverifiedApprover || rec.Reason != reason {
			t.Errorf("%q: %+v %v, want an unverified rejection with reason %q", v, rec, stamped, reason)
		}
	}
	long := strings.Repeat("x", 300)
	if rec, _ := ParseRejection(long); len(rec.Reason) != MaxRejectReasonLength || !strings.HasSuffix(rec.Reason, "...") {
		t.Errorf("a long reason is kept %d characters long (%q...), want clipped to %d", len(rec.Reason), rec.Reason[:10], MaxRejectReasonLength)
	}
}
