package api

import (
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/actors"
	"github.com/kalcifer/kalcifer/store"
)

// Segment-spec compatibility: /identify, /track and /batch take the calls
// tracking SDKs already make, in Segment's camelCase. Their bodies are
// decoded leniently because the SDKs add fields Kalcifer has no use for
// (context, integrations, anonymousId, sentAt...); the fields it does use
// are still type-checked.

const (
	segmentIdentify = "identify"
	segmentTrack    = "track"
)

// segmentMessage is one identify or track call. It is also the whole body
// of /identify and /track, whose route sets kind before decoding.
type segmentMessage struct {
	// Type names the call inside a batch; the single-call routes imply it.
	Type       string         `json:"type"`
	UserID     *string        `json:"userId"`
	Event      *string        `json:"event"`
	Properties map[string]any `json:"properties"`
	Traits     map[string]any `json:"traits"`
	MessageID  *string        `json:"messageId"`
	Timestamp  *string        `json:"timestamp"`
	kind       string
	incoming   actors.Incoming
}

func (m *segmentMessage) check() (err error) {
	m.incoming, err = m.input(m.kind, "")
	return err
}

// input checks the call found at prefix in the body and turns it into
// the engine's input: an identify updates the profile, a track is an event.
func (m *segmentMessage) input(kind, prefix string) (actors.Incoming, error) {
	if kind != segmentIdentify && kind != segmentTrack {
		return actors.Incoming{}, invalidField(prefix+"type", fmt.Sprintf("must be %s or %s", segmentIdentify, segmentTrack))
	}
	if m.UserID == nil {
		// Journeys run for known customers, so an anonymousId alone names no one.
		e := apiError(http.StatusBadRequest, "missing_field",
			fmt.Sprintf("field %q is required; calls with only an anonymousId are not accepted", prefix+"userId"))
		e.Details = map[string]string{"field": prefix + "userId"}
		return actors.Incoming{}, e
	}
	if err := checkExternalID(prefix+"userId", m.UserID); err != nil {
		return actors.Incoming{}, err
	}
	if err := checkKey(prefix+"messageId", m.MessageID, false); err != nil {
		return actors.Incoming{}, err
	}
	at, err := parseTimestamp(prefix+"timestamp", m.Timestamp)
	if err != nil {
		return actors.Incoming{}, err
	}
	in := actors.Incoming{ExternalID: *m.UserID, MessageID: deref(m.MessageID), Timestamp: at}
	if kind == segmentIdentify {
		in.Traits, err = traitsPatch(prefix+"traits", m.Traits)
		return in, err
	}
	if err := checkKey(prefix+"event", m.Event, true); err != nil {
		return actors.Incoming{}, err
	}
	in.Type, in.Properties = *m.Event, m.Properties
	return in, nil
}

// profileTraits are the traits that are profile fields rather than properties.
var profileTraits = []string{"email", "phone", "name", "timezone"}

// traitsPatch maps Segment traits onto a profile change: the profile's own
// fields from their traits, every other trait to a property. The patch is
// never nil, so that an identify always creates the customer.
func traitsPatch(field string, traits map[string]any) (*store.CustomerPatch, error) {
	fields := map[string]*string{}
	properties := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(traits)) {
		v := traits[k]
		if !slices.Contains(profileTraits, k) {
			properties[k] = v
			continue
		}
		if v == nil {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return nil, invalidField(field+"."+k, "must be a string")
		}
		fields[k] = &s
	}
	if err := checkTimezone(field+".timezone", fields["timezone"]); err != nil {
		return nil, err
	}
	p := &store.CustomerPatch{Email: fields["email"], Phone: fields["phone"], Name: fields["name"], Timezone: fields["timezone"]}
	if len(properties) > 0 {
		p.Properties = properties
	}
	return p, nil
}

type segmentBatchRequest struct {
	Batch    []segmentMessage `json:"batch"`
	incoming []actors.Incoming
}

func (r *segmentBatchRequest) check() error {
	if r.Batch == nil {
		return missingField("batch")
	}
	if err := checkBatchSize("batch", len(r.Batch)); err != nil {
		return err
	}
	r.incoming = make([]actors.Incoming, len(r.Batch))
	for i := range r.Batch {
		in, err := r.Batch[i].input(r.Batch[i].Type, fmt.Sprintf("batch[%d].", i))
		if err != nil {
			return err
		}
		r.incoming[i] = in
	}
	return nil
}

// segmentResponse is what Segment's API answers, so that SDKs see success.
type segmentResponse struct {
	Success bool `json:"success"`
	// Rejected lists the calls of a batch the engine refused; SDKs ignore
	// it, people debugging an integration do not.
	Rejected []rejectedCall `json:"rejected,omitempty"`
}

type rejectedCall struct {
	Index int           `json:"index"`
	Error *actors.Error `json:"error"`
}

// decodeSegment reads a Segment body leniently.
func decodeSegment(c echo.Context, dst checker) error {
	data, err := readBody(c)
	if err != nil {
		return err
	}
	return decodeJSON(data, dst, false)
}

// segmentCall is the handler of /identify and /track.
func (s *Server) segmentCall(kind string) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := segmentMessage{kind: kind}
		if err := decodeSegment(c, &req); err != nil {
			return err
		}
		results, err := s.ingest(c, []actors.Incoming{req.incoming})
		if err != nil {
			return err
		}
		if r := results[0]; r.Error != nil {
			return refusalError(r.Error)
		}
		return c.JSON(http.StatusOK, segmentResponse{Success: true})
	}
}

func (s *Server) segmentBatch(c echo.Context) error {
	var req segmentBatchRequest
	if err := decodeSegment(c, &req); err != nil {
		return err
	}
	results, err := s.ingest(c, req.incoming)
	if err != nil {
		return err
	}
	res := segmentResponse{Success: true}
	for i, r := range results {
		if r.Error != nil {
			res.Rejected = append(res.Rejected, rejectedCall{Index: i, Error: r.Error})
		}
	}
	return c.JSON(http.StatusOK, res)
}
