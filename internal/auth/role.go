// Package auth holds medic's API tokens and roles: the tokens file (hashes
// only), bearer-token authentication in constant time, and the HTTP
// middleware that turns a token into an Identity or a 401/403.
package auth

import "fmt"

// Role is what a token may do. Roles are ordered: a higher role may do
// everything a lower one may. The zero value, RoleNone, may do nothing.
type Role int

const (
	RoleNone     Role = iota // no access; never valid in a tokens file
	RoleViewer               // reads: status, events, audit
	RoleOperator             // mutations: alerts in, approve, deny, pause, resume, drills
	RoleAdmin                // everything, including configuration and tokens
)

var roleNames = [...]string{"none", "viewer", "operator", "admin"}

// String returns the role's name as written in the tokens file.
func (r Role) String() string {
	if r < 0 || int(r) >= len(roleNames) {
		return fmt.Sprintf("role(%d)", int(r))
	}
	return roleNames[r]
}

// ParseRole parses "viewer", "operator" or "admin" (exactly, lower case).
func ParseRole(s string) (Role, error) {
	for r := RoleViewer; r <= RoleAdmin; r++ {
		if s == roleNames[r] {
			return r, nil
		}
	}
	return RoleNone, fmt.Errorf("unknown role %q (want viewer, operator or admin)", s)
}

// AtLeast reports whether r may do what need requires.
func (r Role) AtLeast(need Role) bool { return r >= need }

// MarshalText renders the role by name in JSON and YAML.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses a role name as ParseRole does.
func (r *Role) UnmarshalText(b []byte) error {
	p, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = p
	return nil
}
