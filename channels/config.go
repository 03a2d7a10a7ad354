package channels

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
)

// Require checks that d has what provider kind needs: a clock always, and
// an HTTP client too when http is set.
func (d Deps) Require(kind string, http bool) error {
	switch {
	case http && (d.HTTP == nil || d.Now == nil):
		return errors.New(kind + ": deps.HTTP and deps.Now are required")
	case d.Now == nil:
		return errors.New(kind + ": deps.Now is required")
	}
	return nil
}

// HTTPSBaseURL reads a provider's base_url setting, or fallback when it is
// empty: an https URL without credentials, query or fragment, since paths
// are appended to it and credentials must not cross the network in clear.
// It is returned without trailing slashes.
func HTTPSBaseURL(value, fallback string) (string, error) {
	if value == "" {
		value = fallback
	}
	u, err := url.Parse(value)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("base_url must be an https URL without query or credentials")
	}
	return strings.TrimRight(value, "/"), nil
}

// NewHTTP is the New of a provider that makes HTTP requests: it reads the
// configuration with load, then checks that deps can make requests, and
// builds the provider from the configuration with build.
func NewHTTP[C any](kind string, config json.RawMessage, deps Deps, load func(json.RawMessage) (C, error), build func(C) Provider) (Provider, error) {
	c, err := load(config)
	if err != nil {
		return nil, err
	}
	if err := deps.Require(kind, true); err != nil {
		return nil, err
	}
	return build(c), nil
}
