package expr

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// credentialPatterns are the shapes of credentials that are unmistakable in a step's results:
// the formats secret scanners flag with next to no false positives. An image digest, a URL or a
// ticket number matches none of them.
var credentialPatterns = []struct {
	what string
	re   *regexp.Regexp
}{
	{"a private key (PEM)", regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----`)},
	{"a JSON Web Token (a Kubernetes ServiceAccount token, a JWT-SVID, an OIDC token)",
		regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}`)},
	{"an AWS access key ID", regexp.MustCompile(`\b(AKIA|ASIA)[0-9A-Z]{16}\b`)},
	{"a GitHub token", regexp.MustCompile(`\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b`)},
	{"a GitLab token", regexp.MustCompile(`\bglpat-[A-Za-z0-9_-]{20,}\b`)},
	{"a Slack token", regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}\b`)},
	{"a Google API key", regexp.MustCompile(`\bAIza[0-9A-Za-z_-]{35}\b`)},
	{"a Stripe secret key", regexp.MustCompile(`\b[rs]k_live_[0-9A-Za-z]{16,}\b`)},
}

// CredentialLike says what credential a result value looks like, or "" when it looks like none.
func CredentialLike(value string) string {
	for _, p := range credentialPatterns {
		if p.re.MatchString(value) {
			return p.what
		}
	}
	return ""
}

// MinSecretLen is the shortest credential value LeakedSecret looks for: shorter values ("true",
// a port) would match results by chance.
const MinSecretLen = 8

// distinctive says whether a granted value is unlikely to appear in a result by chance: at least
// MinSecretLen bytes of three kinds of character (lower case, upper case, digits, others), like a
// password, or 16 of two, like a token. A user name granted beside a password ("postgres",
// "svc-backup") is not, so a result naming it is not taken for a leak.
func distinctive(v string) bool {
	var lower, upper, digit, other int
	for _, r := range v {
		switch {
		case r >= 'a' && r <= 'z':
			lower = 1
		case r >= 'A' && r <= 'Z':
			upper = 1
		case r >= '0' && r <= '9':
			digit = 1
		default:
			other = 1
		}
	}
	kinds := lower + upper + digit + other
	return (len(v) >= MinSecretLen && kinds >= 3) || (len(v) >= 2*MinSecretLen && kinds >= 2)
}

// LeakedSecret returns the first result (by name) whose value contains one of the secret values
// (by name, for example "key password of Secret db"), as it is or in an encoding a step commonly
// puts it in (base64 at any offset, as in a Basic authorization header; hex; percent-encoded, as
// in a connection URL; the name then says which), or "", "" when none does. A value is looked for
// without the whitespace around it (a Secret made from a file often ends in a newline), and only
// if it is distinctive. This catches mistakes, not a step bent on hiding a value.
func LeakedSecret(results map[string]string, secrets map[string]string) (result, secret string) {
	names := slices.Sorted(maps.Keys(secrets))
	forms := make(map[string][]encodedForm, len(names))
	for _, n := range names {
		if v := strings.TrimSpace(secrets[n]); distinctive(v) {
			forms[n] = encodedForms(v)
		}
	}
	for _, r := range SortedKeys(results) {
		for _, n := range names {
			for _, f := range forms[n] {
				if strings.Contains(results[r], f.text) {
					if f.encoding != "" {
						return r, n + " (" + f.encoding + ")"
					}
					return r, n
				}
			}
		}
	}
	return "", ""
}

type encodedForm struct{ encoding, text string }

// encodedForms returns v and the text that appears in an encoding of any input containing v:
// for base64, the complete 4-character groups that v's bytes alone decide, for each of the three
// offsets v can start at (an input of which v is a part at offset 1 or 2 modulo 3 encodes
// v[2:] or v[1:] on group boundaries).
func encodedForms(v string) []encodedForm {
	out := []encodedForm{{"", v}, {"hex-encoded", hex.EncodeToString([]byte(v))},
		{"hex-encoded", strings.ToUpper(hex.EncodeToString([]byte(v)))}}
	for _, e := range []string{url.QueryEscape(v), url.PathEscape(v)} {
		if e != v {
			out = append(out, encodedForm{"percent-encoded", e})
		}
	}
	for offset := range 3 {
		rest := []byte(v[offset:])
		rest = rest[:len(rest)/3*3]
		if len(rest) < 6 { // 8 characters at least: shorter would match by chance
			continue
		}
		out = append(out, encodedForm{"base64-encoded", base64.StdEncoding.EncodeToString(rest)},
			encodedForm{"base64-encoded", base64.URLEncoding.EncodeToString(rest)})
	}
	return out
}

// credentialProblem is the error for results that look like credentials, naming results and
// what they look like, never their values.
func credentialProblem(results map[string]string) error {
	var found []string
	for _, name := range SortedKeys(results) {
		if what := CredentialLike(results[name]); what != "" {
			found = append(found, fmt.Sprintf("%s looks like %s", name, what))
		}
	}
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("results that look like credentials: %s; results are stored in the Workflow's status for anyone "+
		"who can read it, so a credential must stay in the step (request it through a CredentialGrant)", strings.Join(found, "; "))
}
