package nodes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/kalcifer/kalcifer/journey"
)

// codeInvalidConfig is the problem code for every config error, whether the
// schema or a semantic check found it, so that clients handle one code.
const codeInvalidConfig = "invalid_config"

// schemaBaseURL only names the schemas inside the compiler; nothing is fetched.
const schemaBaseURL = "https://kalcifer.dev/schemas/nodes/"

var printer = message.NewPrinter(language.English)

// patternHints replaces "does not match pattern" with what the pattern means,
// keyed by the regular expression exactly as the schemas spell it.
var patternHints = map[string]string{
	`^\d+(s|m|h|d|w)$`:          "must be a whole number followed by s, m, h, d or w, such as 30m or 3d",
	`^[a-z0-9_-]{1,40}$`:        "must be 1 to 40 lowercase letters, digits, '_' or '-'",
	`^[a-z0-9_]+$`:              "must be lowercase letters, digits or '_'",
	`^[^\s]{1,64}$`:             "must be 1 to 64 characters without spaces",
	`^([01]\d|2[0-3]):[0-5]\d$`: "must be a 24-hour time HH:MM, such as 09:30",
	`^(context|profile|event)(\.[A-Za-z0-9_-]+)+$`: "must be a path such as context.order_id, profile.email or event.id",
	`^[a-z]{2,3}(_[A-Z]{2})?$`:                     "must be a language code such as en or en_US",
}

// base carries what every node type shares: identity, catalog text and its
// schema, compiled on first use.
type base struct {
	name        string
	category    journey.Category
	description string
	schema      string
	compiled    func() (*jsonschema.Schema, error)
	// branches are the fixed keys of types that always branch the same way.
	branches []string
}

func newBase(name string, category journey.Category, description, schema string, branches ...string) base {
	return base{
		name:        name,
		category:    category,
		description: description,
		schema:      schema,
		compiled:    sync.OnceValues(func() (*jsonschema.Schema, error) { return compileSchema(name, schema) }),
		branches:    branches,
	}
}

func (b base) Name() string                      { return b.name }
func (b base) Category() journey.Category        { return b.category }
func (b base) Description() string               { return b.description }
func (b base) BranchKeys() []string              { return slices.Clone(b.branches) }
func (b base) DynamicBranches() bool             { return false }
func (b base) Branches(json.RawMessage) []string { return slices.Clone(b.branches) }
func (b base) Terminal(json.RawMessage) bool     { return false }

// Schema returns a copy so that no caller can alter what others are served.
func (b base) Schema() json.RawMessage { return json.RawMessage(b.schema) }

func compileSchema(name, schema string) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("parse schema of node type %s: %w", name, err)
	}
	url := schemaBaseURL + name + ".json"
	c := jsonschema.NewCompiler()
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("add schema of node type %s: %w", name, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("compile schema of node type %s: %w", name, err)
	}
	return s, nil
}

// validate runs the schema, then decodes the config into cfg and runs the
// type's semantic checks. Semantic problems on a field the schema already
// rejected are dropped: they would only restate the same mistake.
func (b base) validate(config json.RawMessage, cfg any, semantic func(*checks)) []journey.Problem {
	config = normalize(config)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(config))
	if err != nil {
		return []journey.Problem{problem("", "is not valid JSON: %v", err)}
	}
	if _, ok := doc.(map[string]any); !ok {
		return []journey.Problem{problem("", "must be a JSON object, not %s", jsonKind(doc))}
	}
	s, err := b.compiled()
	if err != nil {
		return []journey.Problem{problem("", "node type %s cannot check its config: %v", b.name, err)}
	}
	var found []journey.Problem
	if err := s.Validate(doc); err != nil {
		var verr *jsonschema.ValidationError
		if !errors.As(err, &verr) {
			return []journey.Problem{problem("", "checking config: %v", err)}
		}
		found = schemaProblems(verr, found)
	}
	if semantic != nil {
		decode(config, cfg)
		c := &checks{}
		semantic(c)
		for _, p := range c.found {
			if !overlapsAny(p.Field, found) {
				found = append(found, p)
			}
		}
	}
	return sortProblems(found)
}

// normalize treats a missing config as an empty object, which is what a node
// freshly dropped on the canvas has.
func normalize(config json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(config)) == 0 {
		return json.RawMessage("{}")
	}
	return config
}

// decode fills cfg as far as the config allows. Its error is deliberately
// ignored: ValidateConfig reports type mismatches through the schema, and
// Branches and Terminal must answer even for configs that failed validation.
func decode(config json.RawMessage, cfg any) {
	_ = json.Unmarshal(normalize(config), cfg)
}

func problem(field, format string, args ...any) journey.Problem {
	return journey.Problem{Code: codeInvalidConfig, Field: field, Message: label(field) + ": " + fmt.Sprintf(format, args...)}
}

// label names a field for people: its pointer without the leading slash.
func label(field string) string {
	if field == "" {
		return "config"
	}
	return strings.TrimPrefix(field, "/")
}

func pointer(loc []string, extra ...string) string {
	var sb strings.Builder
	for _, tok := range append(append([]string(nil), loc...), extra...) {
		sb.WriteByte('/')
		sb.WriteString(strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1"))
	}
	return sb.String()
}

// schemaProblems appends one problem per leaf of the error tree; the inner
// nodes (allOf, $ref, properties) only say that something below failed.
// The schemas avoid propertyNames: jsonschema v6.0.3 reports its errors with
// a location slice that later siblings overwrite, so names are checked in Go.
func schemaProblems(e *jsonschema.ValidationError, out []journey.Problem) []journey.Problem {
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		for _, m := range k.Missing {
			out = append(out, problem(pointer(e.InstanceLocation, m), "is required"))
		}
		return out
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			out = append(out, problem(pointer(e.InstanceLocation, p), "is not a known field"))
		}
		return out
	}
	if len(e.Causes) == 0 {
		return append(out, problem(pointer(e.InstanceLocation), "%s", leafMessage(e.ErrorKind)))
	}
	for _, c := range e.Causes {
		out = schemaProblems(c, out)
	}
	return out
}

func leafMessage(k jsonschema.ErrorKind) string {
	switch k := k.(type) {
	case *kind.Type:
		return fmt.Sprintf("must be %s, not %s", strings.Join(k.Want, " or "), k.Got)
	case *kind.Pattern:
		if hint, ok := patternHints[k.Want]; ok {
			return hint
		}
		return fmt.Sprintf("%q does not match the pattern %s", k.Got, k.Want)
	case *kind.MinLength:
		if k.Want == 1 {
			return "must not be empty"
		}
		return fmt.Sprintf("must be at least %d characters long", k.Want)
	case *kind.MaxLength:
		return fmt.Sprintf("must be at most %d characters long", k.Want)
	case *kind.Minimum:
		return fmt.Sprintf("must be at least %s", ratString(k.Want))
	case *kind.Maximum:
		return fmt.Sprintf("must be at most %s", ratString(k.Want))
	case *kind.ExclusiveMinimum:
		return fmt.Sprintf("must be greater than %s", ratString(k.Want))
	case *kind.ExclusiveMaximum:
		return fmt.Sprintf("must be less than %s", ratString(k.Want))
	case *kind.MinItems:
		return fmt.Sprintf("must have at least %d items", k.Want)
	case *kind.MaxItems:
		return fmt.Sprintf("must have at most %d items", k.Want)
	case *kind.MinProperties:
		return fmt.Sprintf("must have at least %d fields", k.Want)
	case *kind.UniqueItems:
		return fmt.Sprintf("items %d and %d are the same", k.Duplicates[0], k.Duplicates[1])
	}
	return k.LocalizedString(printer)
}

func ratString(r *big.Rat) string {
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	}
	return "an object"
}

// overlapsAny reports whether field is, contains or lies inside a field that
// already has a problem.
func overlapsAny(field string, found []journey.Problem) bool {
	for _, p := range found {
		if field == p.Field || strings.HasPrefix(field, p.Field+"/") || strings.HasPrefix(p.Field, field+"/") {
			return true
		}
	}
	return false
}

// sortProblems orders by field then message so that the editor and tests see
// the same list every time, and drops exact repeats.
func sortProblems(ps []journey.Problem) []journey.Problem {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Field != ps[j].Field {
			return ps[i].Field < ps[j].Field
		}
		return ps[i].Message < ps[j].Message
	})
	out := ps[:0]
	for i, p := range ps {
		if i == 0 || p != ps[i-1] {
			out = append(out, p)
		}
	}
	return out
}

// checks collects the semantic problems of one config.
type checks struct {
	found []journey.Problem
}

func (c *checks) add(field, format string, args ...any) {
	c.found = append(c.found, problem(field, format, args...))
}

// duration checks a duration the schema has already shaped and bounds it;
// max 0 means no upper bound beyond ParseDuration's own.
func (c *checks) duration(field, value string, positive bool, max time.Duration) {
	d, err := journey.ParseDuration(value)
	switch {
	case err != nil:
		c.add(field, "%v", err)
	case positive && d <= 0:
		c.add(field, "must be longer than 0s")
	case max > 0 && d > max:
		c.add(field, "must be at most %gs", max.Seconds())
	}
}

// distinct reports every key already seen earlier in keys, at field/<index>
// under the given suffix ("" or "/key").
func (c *checks) distinct(field string, keys []string, suffix string) {
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		if seen[k] {
			c.add(fmt.Sprintf("%s/%d%s", field, i, suffix), "%q is used more than once", k)
		}
		seen[k] = true
	}
}

// templateIDProperty is the same field in every message channel's schema.
const templateIDProperty = `"template_id": {
      "type": "string",
      "title": "Template",
      "description": "ID of the template to render; when set, the inline content fields are ignored.",
      "minLength": 1,
      "maxLength": 255
    }`

// contentConfig holds the message fields of the channel nodes; each node's
// schema decides which of them it accepts.
type contentConfig struct {
	TemplateID string `json:"template_id"`
	Subject    string `json:"subject"`
	Title      string `json:"title"`
	Body       string `json:"body"`
	From       string `json:"from"`
	ReplyTo    string `json:"reply_to"`
}

func (c contentConfig) field(name string) string {
	switch name {
	case "subject":
		return c.Subject
	case "title":
		return c.Title
	}
	return c.Body
}

// validateContent enforces the channel rule "a template, or inline content":
// with no template_id every one of the inline fields is required.
func (b base) validateContent(config json.RawMessage, extra func(contentConfig, *checks), inline ...string) []journey.Problem {
	var c contentConfig
	return b.validate(config, &c, func(ch *checks) {
		if c.TemplateID == "" {
			for _, name := range inline {
				if c.field(name) == "" {
					ch.add("/"+name, "is required unless template_id is set (needs %s)", strings.Join(inline, " and "))
				}
			}
		}
		if extra != nil {
			extra(c, ch)
		}
	})
}

// ValidateConfig serves the types whose schema says everything.
func (b base) ValidateConfig(config json.RawMessage) []journey.Problem {
	return b.validate(config, nil, nil)
}
