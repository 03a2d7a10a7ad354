package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/actors"
	"github.com/kalcifer/kalcifer/nodes"
	"github.com/kalcifer/kalcifer/store"
)

// Header names of the enrolment routes.
const (
	headerIdempotencyKey = "Idempotency-Key"
	headerSignature      = "X-Kalcifer-Signature"
)

const webhookEntryType = "webhook_entry"

type enrolResults struct {
	Results []enrolment `json:"results"`
}

// triggerJourney enrols customers by hand, at the journey's first entry node.
func (s *Server) triggerJourney(c echo.Context) error {
	key := c.Request().Header.Get(headerIdempotencyKey)
	if len(key) > maxKeyLength || !printableASCII(key) {
		return invalidParameter(headerIdempotencyKey, fmt.Sprintf("must be at most %d printable ASCII characters", maxKeyLength))
	}
	var req triggerRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	j, err := s.loadJourney(c)
	if err != nil {
		return err
	}
	results, err := s.enrol(c, j, "", key, req.targets())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, enrolResults{Results: results})
}

// webhookEntry enrols the customer a webhook names through the journey's
// webhook_entry node. The body is read raw first because the signature, when
// the node has a secret, covers its exact bytes.
func (s *Server) webhookEntry(c echo.Context) error {
	j, err := s.findJourney(c, c.Param("journey_id"))
	if err != nil {
		return err
	}
	data, err := readBody(c)
	if err != nil {
		return err
	}
	secret, err := s.webhookSecret(c, j)
	if err != nil {
		return err
	}
	if secret != "" && !validSignature(c.Request().Header.Get(headerSignature), secret, data) {
		return apiError(http.StatusUnauthorized, "invalid_signature",
			"send "+headerSignature+": sha256=<hex HMAC-SHA256 of the body with the webhook secret>")
	}
	var req webhookRequest
	if err := decodeJSON(data, &req, true); err != nil {
		return err
	}
	results, err := s.enrol(c, j, webhookEntryType, deref(req.MessageID), []actors.Target{req.single().target()})
	if err != nil {
		return err
	}
	if r := results[0]; r.Error != nil {
		return refusalError(r.Error)
	}
	return c.JSON(http.StatusAccepted, results[0])
}

// webhookSecret is the secret of the first webhook_entry node of the
// journey's active version, the node the engine enrols through; "" when
// there is none to check.
func (s *Server) webhookSecret(c echo.Context, j store.Journey) (string, error) {
	if j.ActiveVersion == 0 {
		return "", nil
	}
	v, err := s.store.Journeys().GetVersion(c.Request().Context(), j.TenantID, j.ID, j.ActiveVersion)
	if err != nil {
		return "", storeError(err, "journey_not_found", "journey version")
	}
	g, err := storedGraph(v)
	if err != nil {
		return "", err
	}
	for _, n := range g.Nodes {
		if n.Type == webhookEntryType {
			return nodes.ParseWebhookEntry(n.Config).Secret, nil
		}
	}
	return "", nil
}

// validSignature checks header, "sha256=<hex>", against the HMAC-SHA256 of
// body in constant time.
func validSignature(header, secret string, body []byte) bool {
	sig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}
