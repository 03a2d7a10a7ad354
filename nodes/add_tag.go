package nodes

import "github.com/kalcifer/kalcifer/journey"

const addTagSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Add tag",
  "description": "Adds a tag to the customer.",
  "type": "object",
  "additionalProperties": false,
  "required": ["tag"],
  "properties": {
    "tag": {
      "type": "string",
      "title": "Tag",
      "description": "Tag to add: 1 to 64 characters without spaces.",
      "pattern": "^[^\\s]{1,64}$",
      "examples": ["vip", "onboarded"]
    }
  }
}`

type addTag struct{ base }

func newAddTag() Type {
	return addTag{newBase("add_tag", journey.CategoryData,
		"Adds a tag to the customer; adding a tag they already have changes nothing.", addTagSchema)}
}

type tagConfig struct {
	Tag string `json:"tag"`
}

func (addTag) Execute(x *Exec) Result {
	c := config[tagConfig](x.Node)
	return Result{Outcome: Completed, Profile: &ProfileChange{AddTags: []string{c.Tag}}}
}
