package registry

import (
	"fmt"
	"strings"
)

// maxRepositoryLength is distribution's NameTotalLengthMax.
const maxRepositoryLength = 255

// ValidateRepository checks a repository name (the <name> in /v2/<name>/...)
// against the distribution reference grammar, without a registry domain:
//
//	name      := component ('/' component)*
//	component := alnum (separator alnum)*
//	alnum     := [a-z0-9]+
//	separator := '.' | '_' | '__' | '-'+
//
// and at most 255 characters in total.
func ValidateRepository(name string) error {
	if name == "" {
		return fmt.Errorf("repository name is empty")
	}
	if len(name) > maxRepositoryLength {
		return fmt.Errorf("repository name %q is longer than %d characters", truncate(name, 40), maxRepositoryLength)
	}
	for comp := range strings.SplitSeq(name, "/") {
		if err := validateComponent(comp); err != nil {
			return fmt.Errorf("repository name %q: %w", name, err)
		}
	}
	return nil
}

func validateComponent(c string) error {
	if c == "" {
		return fmt.Errorf("empty path component")
	}
	for i := 0; i < len(c); {
		ch := c[i]
		if isAlnum(ch) {
			i++
			continue
		}
		if !isSeparatorChar(ch) {
			return fmt.Errorf("character %q not allowed (use a-z, 0-9, '.', '_', '-', '/')", ch)
		}
		j := i
		for j < len(c) && isSeparatorChar(c[j]) {
			j++
		}
		run := c[i:j]
		if i == 0 || j == len(c) {
			return fmt.Errorf("component %q must start and end with a letter or digit", c)
		}
		if run != "." && run != "_" && run != "__" && strings.Trim(run, "-") != "" {
			return fmt.Errorf("separator %q not allowed in %q (one '.', one or two '_', or dashes)", run, c)
		}
		i = j
	}
	return nil
}

func isAlnum(ch byte) bool { return ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' }

func isSeparatorChar(ch byte) bool { return ch == '.' || ch == '_' || ch == '-' }
