package nodes

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/kalcifer/kalcifer/journey"
)

const updateProfileSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Update profile",
  "description": "Sets fields on the customer's profile.",
  "type": "object",
  "additionalProperties": false,
  "required": ["fields"],
  "properties": {
    "fields": {
      "type": "object",
      "title": "Fields",
      "description": "Profile field (1 to 255 characters) to new value; email, phone, name and timezone set the built-in fields, any other name a custom property. String values may use Liquid.",
      "minProperties": 1,
      "additionalProperties": true,
      "examples": [{"plan": "premium", "onboarded": true}]
    }
  }
}`

type updateProfile struct{ base }

func newUpdateProfile() Type {
	return updateProfile{newBase("update_profile", journey.CategoryData,
		"Sets fields on the customer's profile.", updateProfileSchema)}
}

type updateProfileConfig struct {
	Fields map[string]json.RawMessage `json:"fields"`
}

func (t updateProfile) ValidateConfig(config json.RawMessage) []journey.Problem {
	var c updateProfileConfig
	return t.validate(config, &c, func(ch *checks) {
		for name := range c.Fields {
			if n := utf8.RuneCountInString(name); n == 0 || n > 255 {
				ch.add(pointer([]string{"fields", name}), "field names must be 1 to 255 characters long")
			}
		}
	})
}

// Execute sets the values as configured; Liquid in string values is
// rendered by the dispatcher's template engine, which nodes do not import,
// so here they are stored literally.
func (updateProfile) Execute(x *Exec) Result {
	c := config[struct {
		Fields map[string]any `json:"fields"`
	}](x.Node)
	return Result{Outcome: Completed, Profile: &ProfileChange{Set: c.Fields}}
}
