package nodes

import (
	"encoding/json"

	"github.com/kalcifer/kalcifer/journey"
)

const goalReachedSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Goal reached",
  "description": "Records a conversion for the journey's goal.",
  "type": "object",
  "additionalProperties": false,
  "required": ["goal_name"],
  "properties": {
    "goal_name": {
      "type": "string",
      "title": "Goal",
      "description": "Name the conversion is reported under, such as activated.",
      "minLength": 1,
      "maxLength": 255
    },
    "exit_after_goal": {
      "type": "boolean",
      "title": "Exit after goal",
      "description": "End the customer's path here; otherwise they continue along the out-edges.",
      "default": false
    }
  }
}`

type goalReachedConfig struct {
	ExitAfterGoal bool `json:"exit_after_goal"`
}

type goalReached struct{ base }

func newGoalReached() Type {
	return goalReached{newBase("goal_reached", journey.CategoryExit,
		"Records that the customer reached a goal, optionally ending their path.", goalReachedSchema)}
}

func (goalReached) Terminal(config json.RawMessage) bool {
	var c goalReachedConfig
	decode(config, &c)
	return c.ExitAfterGoal
}

func (goalReached) Execute(x *Exec) Result {
	c := config[struct {
		goalReachedConfig
		GoalName string `json:"goal_name"`
	}](x.Node)
	r := Result{Outcome: Completed, Goal: c.GoalName, Output: map[string]any{"goal": c.GoalName}}
	if c.ExitAfterGoal {
		r.Outcome = ExitInstance
	}
	return r
}
