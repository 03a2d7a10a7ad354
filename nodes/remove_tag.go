package nodes

import "github.com/kalcifer/kalcifer/journey"

const removeTagSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Remove tag",
  "description": "Removes a tag from the customer.",
  "type": "object",
  "additionalProperties": false,
  "required": ["tag"],
  "properties": {
    "tag": {
      "type": "string",
      "title": "Tag",
      "description": "Tag to remove.",
      "minLength": 1,
      "maxLength": 255,
      "examples": ["trial"]
    }
  }
}`

type removeTag struct{ base }

func newRemoveTag() Type {
	return removeTag{newBase("remove_tag", journey.CategoryData,
		"Removes a tag from the customer; removing a tag they do not have changes nothing.", removeTagSchema)}
}

func (removeTag) Execute(x *Exec) Result {
	c := config[tagConfig](x.Node)
	return Result{Outcome: Completed, Profile: &ProfileChange{RemoveTags: []string{c.Tag}}}
}
