package api

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/store"
)

// callerKeyContext is where authenticate leaves the caller's API key.
const callerKeyContext = "kalcifer.api_key"

// authenticate resolves the bearer API key to its tenant. Every later
// handler scopes its store calls to that tenant.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return s.authenticateBy(bearerToken, next)
}

// authenticateSegment also takes the key the way Segment's SDKs send their
// write key, as the user name of HTTP Basic auth, so that they need no change
// beyond the host.
func (s *Server) authenticateSegment(next echo.HandlerFunc) echo.HandlerFunc {
	return s.authenticateBy(segmentToken, next)
}

func (s *Server) authenticateBy(token func(header string) (string, error), next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		secret, err := token(c.Request().Header.Get(echo.HeaderAuthorization))
		if err != nil {
			return err
		}
		key, err := s.store.Tenants().APIKeyByHash(c.Request().Context(), store.HashAPIKey(secret))
		switch {
		case errors.Is(err, store.ErrNotFound):
			return apiError(http.StatusUnauthorized, "invalid_api_key", "the API key is not valid")
		case err != nil:
			return fmt.Errorf("look up api key: %w", err)
		case key.RevokedAt != nil:
			return apiError(http.StatusUnauthorized, "revoked_api_key", "the API key has been revoked")
		}
		s.touch(c, key)
		c.Set(callerKeyContext, key)
		return next(c)
	}
}

func bearerToken(header string) (string, error) {
	if header == "" {
		return "", apiError(http.StatusUnauthorized, "missing_api_key",
			"send an API key as Authorization: Bearer kal_...")
	}
	scheme, token, ok := strings.Cut(header, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", apiError(http.StatusUnauthorized, "missing_api_key",
			"the Authorization header must be Bearer followed by an API key")
	}
	return token, nil
}

// segmentToken reads Basic credentials whose user name is the API key, and
// otherwise a bearer token.
func segmentToken(header string) (string, error) {
	scheme, credentials, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return bearerToken(header)
	}
	decoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(credentials))
	user, _, _ := strings.Cut(string(decoded), ":")
	if err != nil || user == "" {
		return "", apiError(http.StatusUnauthorized, "missing_api_key",
			"Basic credentials must carry the API key as the user name")
	}
	return user, nil
}

// callerKey is the API key the request was authenticated with.
func callerKey(c echo.Context) (store.APIKey, bool) {
	key, ok := c.Get(callerKeyContext).(store.APIKey)
	return key, ok
}

// tenantID is the caller's tenant; only called behind authenticate.
func tenantID(c echo.Context) string {
	key, _ := callerKey(c)
	return key.TenantID
}

// touchInterval is how stale last_used_at may get: precise enough to tell
// unused keys from used ones without a write on every request.
const touchInterval = time.Minute

// keyUsage remembers when this server last recorded each key's use, so that
// concurrent requests in the same minute do not all write.
type keyUsage struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func newKeyUsage() *keyUsage {
	return &keyUsage{last: make(map[string]time.Time)}
}

// due reports whether the key's use at now should be written, and if so
// claims the write.
func (u *keyUsage) due(key store.APIKey, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	last := u.last[key.ID]
	if key.LastUsedAt != nil && key.LastUsedAt.After(last) {
		last = *key.LastUsedAt
	}
	if now.Sub(last) < touchInterval {
		return false
	}
	u.last[key.ID] = now
	return true
}

// touch records key use; failing to do so must not fail the request.
func (s *Server) touch(c echo.Context, key store.APIKey) {
	now := s.now()
	if !s.keys.due(key, now) {
		return
	}
	if err := s.store.Tenants().TouchAPIKey(c.Request().Context(), key.ID, now); err != nil {
		s.log.WarnContext(c.Request().Context(), "record api key use",
			slog.String("api_key_id", key.ID), slog.Any("error", err))
	}
}
