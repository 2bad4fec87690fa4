package expr

import (
	"fmt"
	"maps"
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
// (by name, for example "key password of Secret db"), or "", "" when none does. Only distinctive
// values are looked for.
func LeakedSecret(results map[string]string, secrets map[string]string) (result, secret string) {
	names := slices.Sorted(maps.Keys(secrets))
	for _, r := range SortedKeys(results) {
		for _, n := range names {
			if v := secrets[n]; distinctive(v) && strings.Contains(results[r], v) {
				return r, n
			}
		}
	}
	return "", ""
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
