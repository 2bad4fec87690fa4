package expr

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
)

// TestCredentialLike: the credential formats a step might echo into its results by mistake are
// recognised; what results are for (digests, URLs, commit hashes, references) is not. The
// samples are built here, not written out, so that no secret scanner takes this file for a leak.
func TestCredentialLike(t *testing.T) {
	jwtPart := "eyJ" + strings.Repeat("hbGciOiJSUzI1NiJ9", 2)
	for value, want := range map[string]string{
		"-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEow...":                     "a private key (PEM)",
		`{"private_key":"-----BEGIN ` + `PRIVATE KEY-----\nMII..."}`:          "a private key (PEM)",
		"Bearer " + jwtPart + "." + jwtPart + "." + strings.Repeat("sig_", 8): "a JSON Web Token",
		"AKIA" + strings.Repeat("Q", 16):                                      "an AWS access key ID",
		"token: " + "ghp_" + strings.Repeat("a1B2", 9):                        "a GitHub token",
		"github_pat_" + strings.Repeat("x", 30):                               "a GitHub token",
		"glpat-" + strings.Repeat("Ab3", 7):                                   "a GitLab token",
		"xoxb-" + "1234567890-abcdef":                                         "a Slack token",
		"AIza" + strings.Repeat("b", 35):                                      "a Google API key",
		"sk_live_" + strings.Repeat("4eC3", 6):                                "a Stripe secret key",
	} {
		if got := CredentialLike(value); !strings.HasPrefix(got, want) {
			t.Errorf("CredentialLike(%.24q...) = %q, want %q", value, got, want)
		}
	}
	for _, value := range []string{
		"sha256:" + strings.Repeat("0f", 32),
		"registry.example.com/app@sha256:" + strings.Repeat("ab", 32),
		"4b825dc642cb6eb9a060e54bf8d69288fbee4904", // a commit
		"https://ci.example.com/builds/4711?ref=main",
		"PAY-4711-0001", "s3://backups/orders/nightly.dump", "12000",
		"-----BEGIN CERTIFICATE-----\nMIIB...", // a certificate is public
		"eyJhbGciOiJSUzI1NiJ9",                 // a JWT header alone says nothing secret
		"AKIA-FORMS-2026",
	} {
		if got := CredentialLike(value); got != "" {
			t.Errorf("CredentialLike(%q) = %q, want nothing", value, got)
		}
	}
}

// TestParseResultsRefusesCredentials: results that look like credentials fail the attempt with
// an error naming the result and what it looks like, never its value.
func TestParseResultsRefusesCredentials(t *testing.T) {
	key := "AKIA" + strings.Repeat("Z", 16)
	_, err := ParseResults(`{"digest":"sha256:abc","creds":"`+key+`"}`, []string{"digest", "creds"})
	if err == nil || !strings.Contains(err.Error(), "creds looks like an AWS access key ID") ||
		!strings.Contains(err.Error(), "CredentialGrant") || strings.Contains(err.Error(), key) {
		t.Errorf("ParseResults with a key in a result: %v", err)
	}
	// Undeclared keys are not kept, so they are not looked at either.
	if _, err := ParseResults(`{"digest":"sha256:abc","creds":"`+key+`"}`, []string{"digest"}); err != nil {
		t.Errorf("an undeclared result was judged: %v", err)
	}
}

// TestLeakedSecret: a result containing the value of a Secret the attempt was given is found,
// the first by result name; values that could appear by chance (short, or a plain word) are not
// looked for.
func TestLeakedSecret(t *testing.T) {
	secrets := map[string]string{"key password of Secret db": "correct-horse-battery-9", "key port of Secret db": "5432",
		"key user of Secret db": "postgres", "key role of Secret db": "svc-backup", "key token of Secret api": strings.Repeat("4f2a", 8)}
	for _, tc := range []struct {
		results              map[string]string
		wantResult, wantName string
	}{
		{map[string]string{"dsn": "postgres://app:correct-horse-battery-9@db:5432/orders"}, "dsn", "key password of Secret db"},
		{map[string]string{"b": "x correct-horse-battery-9", "a": "correct-horse-battery-9"}, "a", "key password of Secret db"},
		{map[string]string{"url": "https://api/?t=" + strings.Repeat("4f2a", 8)}, "url", "key token of Secret api"},
		// A port, a user name or a role granted beside the password is not taken for a leak.
		{map[string]string{"endpoint": "postgres://db:5432", "who": "svc-backup"}, "", ""},
		{map[string]string{"digest": "sha256:abc"}, "", ""},
	} {
		r, n := LeakedSecret(tc.results, secrets)
		if r != tc.wantResult || n != tc.wantName {
			t.Errorf("LeakedSecret(%v) = %q, %q; want %q, %q", tc.results, r, n, tc.wantResult, tc.wantName)
		}
	}
}

// TestLeakedSecretEncoded: a granted value is found in the encodings a step commonly puts it in,
// whichever offset it starts at in what was encoded, and when the Secret's value ends in a newline.
func TestLeakedSecretEncoded(t *testing.T) {
	const pw = "correct-horse-battery-9"
	b64 := base64.StdEncoding.EncodeToString
	secrets := map[string]string{"pw": pw + "\n", "url": "p@ss:w0rd/Xy z"}
	for _, tc := range []struct {
		result, wantName string
	}{
		{pw, "pw"}, // the Secret's trailing newline is not part of what a step prints
		{"Basic " + b64([]byte("app:"+pw)), "pw (base64-encoded)"},         // offset 4: 1 modulo 3
		{"Basic " + b64([]byte("svc-app:"+pw)), "pw (base64-encoded)"},     // offset 8: 2 modulo 3
		{"Basic " + b64([]byte("backup:"+pw+"\n")), "pw (base64-encoded)"}, // offset 7, and more after it
		{base64.URLEncoding.EncodeToString([]byte("~~" + pw + "??")), "pw (base64-encoded)"},
		{"0x" + hex.EncodeToString([]byte(pw)), "pw (hex-encoded)"},
		{strings.ToUpper(hex.EncodeToString([]byte(pw))), "pw (hex-encoded)"},
		{"postgres://app:" + url.QueryEscape("p@ss:w0rd/Xy z") + "@db/orders", "url (percent-encoded)"},
		{"postgres://app:" + url.PathEscape("p@ss:w0rd/Xy z") + "@db/orders", "url (percent-encoded)"},
		// Encodings of other values are not taken for the secret's.
		{b64([]byte("correct-staple-battery-9 and more")), ""},
		{hex.EncodeToString([]byte("an ordinary result")), ""},
	} {
		r, n := LeakedSecret(map[string]string{"out": tc.result}, secrets)
		want := ""
		if tc.wantName != "" {
			want = "out"
		}
		if r != want || n != tc.wantName {
			t.Errorf("LeakedSecret(%q) = %q, %q; want %q, %q", tc.result, r, n, want, tc.wantName)
		}
	}
}

// TestEncodedFormsAreLongEnough: no form of the shortest distinctive value is shorter than a
// distinctive value may be, so none matches results by chance more than the value itself would.
func TestEncodedFormsAreLongEnough(t *testing.T) {
	for _, v := range []string{"Ab1-defg", "Ab1-defgh", "Ab1-defghi"} {
		for _, f := range encodedForms(v) {
			if len(f.text) < MinSecretLen {
				t.Errorf("%q %s: %q is shorter than %d characters", v, f.encoding, f.text, MinSecretLen)
			}
		}
	}
}
