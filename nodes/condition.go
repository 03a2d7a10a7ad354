package nodes

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/kalcifer/kalcifer/journey"
)

const conditionSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Condition",
  "description": "Sends the customer down the true or the false branch depending on an expression.",
  "type": "object",
  "additionalProperties": false,
  "required": ["expression"],
  "properties": {
    "expression": {
      "type": "string",
      "title": "Expression",
      "description": "Boolean expr-lang expression over profile, event and context, such as profile.plan == \"premium\" && event.amount > 100.",
      "minLength": 1,
      "maxLength": 4096,
      "examples": ["profile.plan == \"premium\"", "context.order_total >= 50"]
    }
  }
}`

type conditionConfig struct {
	Expression string `json:"expression"`
}

type condition struct{ base }

func newCondition() Type {
	return condition{newBase("condition", journey.CategoryLogic,
		"Branches on a boolean expression over the customer's profile, the triggering event and the journey context.", conditionSchema, "true", "false")}
}

func (t condition) ValidateConfig(config json.RawMessage) []journey.Problem {
	var c conditionConfig
	return t.validate(config, &c, func(ch *checks) {
		if _, err := compileCondition(c.Expression); err != nil {
			ch.add("/expression", "%v", err)
		}
	})
}

// compileCondition compiles against the same environment the engine
// evaluates with: three maps whose keys are only known at run time, hence
// undefined variables are allowed.
func compileCondition(expression string) (*vm.Program, error) {
	env := map[string]any{
		"profile": map[string]any{},
		"event":   map[string]any{},
		"context": map[string]any{},
	}
	return expr.Compile(expression, expr.Env(env), expr.AllowUndefinedVariables(), expr.AsBool())
}

// programs caches compiled expressions by source: a journey's conditions
// run for every customer, and compiling costs far more than running.
var programs sync.Map

func cachedProgram(expression string) (*vm.Program, error) {
	if p, ok := programs.Load(expression); ok {
		return p.(*vm.Program), nil
	}
	p, err := compileCondition(expression)
	if err != nil {
		return nil, err
	}
	programs.Store(expression, p)
	return p, nil
}

func (condition) Execute(x *Exec) Result {
	c := config[conditionConfig](x.Node)
	p, err := cachedProgram(c.Expression)
	if err != nil {
		return failed("expression", err)
	}
	env := map[string]any{"profile": x.Customer.Profile(), "event": eventMap(x.Event), "context": x.Context}
	v, err := expr.Run(p, env)
	if err != nil {
		return failed("expression", err)
	}
	b, ok := v.(bool)
	if !ok {
		return Result{Outcome: Failed, Reason: fmt.Sprintf("expression: result %v is not a boolean", v)}
	}
	return Result{Outcome: Branched, Branch: strconv.FormatBool(b), Output: map[string]any{"result": b}}
}
