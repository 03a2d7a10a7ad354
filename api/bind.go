package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/journey"
)

// checker is a request body that validates and normalises itself once decoded.
type checker interface {
	check() error
}

// decodeBody reads the request body into dst strictly: a typo in a field name
// or a wrong type is an error that names the field, never a silently ignored
// setting. Then dst checks its own fields.
func decodeBody(c echo.Context, dst checker) error {
	data, err := readBody(c)
	if err != nil {
		return err
	}
	return decodeJSON(data, dst, true)
}

// decodeOptionalBody is decodeBody for routes whose body may be left out;
// then dst keeps its zero value.
func decodeOptionalBody(c echo.Context, dst checker) error {
	data, err := readBody(c)
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return err
	}
	return decodeJSON(data, dst, true)
}

// readBody reads the whole request body within the body limit.
func readBody(c echo.Context) ([]byte, error) {
	data, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, bodyTooLarge(tooLarge.Limit)
		}
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return data, nil
}

// decodeJSON decodes data into dst and has dst check itself. Only strict
// decoding refuses unknown fields; the types of known fields are checked
// either way.
func decodeJSON(data []byte, dst checker, strict bool) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return apiError(http.StatusBadRequest, "invalid_json", "the request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return apiError(http.StatusBadRequest, "invalid_json", "unexpected data after the JSON object")
	}
	if err := checkStorable(data); err != nil {
		return err
	}
	return dst.check()
}

// maxJSONDepth bounds how deeply a body may nest. SQLite's JSON functions
// give up at 1000 levels and PostgreSQL's parser at its stack limit, and
// neither a profile nor a graph needs more than a few.
const maxJSONDepth = 64

// checkStorable refuses what a database would refuse later, as a 500: NUL
// characters, which PostgreSQL stores in neither text nor JSONB, and
// nesting deeper than maxJSONDepth. The body is decoded again, generically,
// because typed fields such as a graph keep their JSON raw.
func checkStorable(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return jsonError(err)
	}
	return storable(v, "", 0)
}

func storable(v any, path string, depth int) error {
	if depth > maxJSONDepth {
		return invalidField(path, fmt.Sprintf("nests deeper than %d levels", maxJSONDepth))
	}
	switch v := v.(type) {
	case string:
		if strings.ContainsRune(v, 0) {
			return invalidField(path, "must not contain NUL characters")
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if strings.ContainsRune(k, 0) {
				return invalidField(p, "must not contain NUL characters in its name")
			}
			if err := storable(v[k], p, depth+1); err != nil {
				return err
			}
		}
	case []any:
		for i, x := range v {
			if err := storable(x, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func bodyTooLarge(limit int64) *Error {
	e := apiError(http.StatusRequestEntityTooLarge, "body_too_large",
		fmt.Sprintf("the request body is larger than %d bytes", limit))
	e.Details = map[string]any{"limit_bytes": limit}
	return e
}

// jsonError classifies an encoding/json error. The decoder has no typed error
// for unknown fields, so that one is recognised by its stable message.
func jsonError(err error) *Error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			return apiError(http.StatusBadRequest, "invalid_json", "the request body must be a JSON object, not "+typeErr.Value)
		}
		e := apiError(http.StatusBadRequest, "invalid_field",
			fmt.Sprintf("field %q must be %s, not %s", field, jsonTypeName(typeErr.Type), typeErr.Value))
		e.Details = map[string]string{"field": field}
		return e
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if unquoted, uerr := strconv.Unquote(name); uerr == nil {
			name = unquoted
		}
		e := apiError(http.StatusBadRequest, "unknown_field", fmt.Sprintf("unknown field %q", name))
		e.Details = map[string]string{"field": name}
		return e
	}
	return apiError(http.StatusBadRequest, "invalid_json", "malformed JSON: "+strings.TrimPrefix(err.Error(), "json: "))
}

// jsonTypeName says which JSON type a Go type expects, in the client's terms.
func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonTypeName(t.Elem())
	default:
		return "a number"
	}
}

func missingField(name string) *Error {
	e := apiError(http.StatusBadRequest, "missing_field", fmt.Sprintf("field %q is required", name))
	e.Details = map[string]string{"field": name}
	return e
}

func invalidField(name, message string) *Error {
	e := apiError(http.StatusBadRequest, "invalid_field", fmt.Sprintf("field %q %s", name, message))
	e.Details = map[string]string{"field": name}
	return e
}

// present reports whether an optional raw field was sent with a value; an
// explicit null counts as absent.
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

// graphField is a request's graph: parsed through journey.Decode, the one
// strict parser every graph goes through, and kept in its canonical encoding
// for storage.
type graphField struct {
	graph   journey.Graph
	encoded []byte
}

func (f *graphField) decode(raw json.RawMessage) error {
	g, err := journey.Decode(raw)
	if err != nil {
		e := apiError(http.StatusBadRequest, "invalid_graph_json", err.Error())
		e.Details = map[string]string{"field": "graph"}
		return e
	}
	f.graph = g
	f.encoded, err = encodeGraph(g)
	return err
}

// encodeGraph is the stored and served form of a graph: absent lists are
// empty arrays so clients never see null.
func encodeGraph(g journey.Graph) ([]byte, error) {
	if g.Nodes == nil {
		g.Nodes = []journey.Node{}
	}
	if g.Edges == nil {
		g.Edges = []journey.Edge{}
	}
	data, err := json.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("encode graph: %w", err)
	}
	return data, nil
}

const (
	maxNameLength        = 200
	maxDescriptionLength = 2000
)

// checkName trims a name field in place; a name must not be blank.
func checkName(value *string) error {
	name := strings.TrimSpace(*value)
	switch {
	case name == "":
		return invalidField("name", "must not be blank")
	case len(name) > maxNameLength:
		return invalidField("name", fmt.Sprintf("must be at most %d bytes", maxNameLength))
	}
	*value = name
	return nil
}

// checkNameAndDescription checks the descriptive fields a request sent;
// nil fields are left to the caller.
func checkNameAndDescription(name, description *string) error {
	if name != nil {
		if err := checkName(name); err != nil {
			return err
		}
	}
	if description != nil && len(*description) > maxDescriptionLength {
		return invalidField("description", fmt.Sprintf("must be at most %d bytes", maxDescriptionLength))
	}
	return nil
}
