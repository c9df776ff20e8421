// promcheck validates Prometheus alerting rules and PromQL expressions offline, with
// Prometheus's own packages (what `promtool check rules` uses), and names the metrics each
// expression selects, so that tests can check them against what the processes export.
//
//	promcheck rules FILE   rule groups: parsed and validated (fields, expressions, label
//	                       names, annotation templates); prints JSON {"errors", "rules"}
//	promcheck exprs        a JSON array of expressions on stdin; prints JSON, one entry
//	                       per expression: {"expr", "error", "metrics"}
//
// Exit status 0 whatever was found: the JSON says. 2: bad usage or input.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

type checkedRule struct {
	Name        string            `json:"name"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Metrics     []string          `json:"metrics"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type checkedExpr struct {
	Expr    string   `json:"expr"`
	Error   *string  `json:"error"`
	Metrics []string `json:"metrics"`
}

var promql = parser.NewParser(parser.Options{})

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var out any
	switch os.Args[1] {
	case "rules":
		if len(os.Args) != 3 {
			usage()
		}
		out = checkRules(os.Args[2])
	case "exprs":
		out = checkExprs(os.Stdin)
	default:
		usage()
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func checkRules(file string) map[string]any {
	groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	messages := []string{}
	for _, err := range errs {
		messages = append(messages, err.Error())
	}
	rules := []checkedRule{}
	if groups != nil {
		for _, group := range groups.Groups {
			for _, rule := range group.Rules {
				name := rule.Alert
				if name == "" {
					name = rule.Record
				}
				rules = append(rules, checkedRule{name, rule.Expr, rule.For.String(), metricsOf(rule.Expr),
					rule.Labels, rule.Annotations})
			}
		}
	}
	return map[string]any{"errors": messages, "rules": rules}
}

func checkExprs(input io.Reader) []checkedExpr {
	var exprs []string
	if err := json.NewDecoder(input).Decode(&exprs); err != nil {
		fail(err)
	}
	checked := []checkedExpr{}
	for _, expr := range exprs {
		entry := checkedExpr{Expr: expr, Metrics: []string{}}
		if _, err := promql.ParseExpr(expr); err != nil {
			message := err.Error()
			entry.Error = &message
		} else {
			entry.Metrics = metricsOf(expr)
		}
		checked = append(checked, entry)
	}
	return checked
}

// metricsOf names the metrics an expression selects (by name, or by a __name__ matcher).
func metricsOf(expr string) []string {
	parsed, err := promql.ParseExpr(expr)
	if err != nil {
		return []string{}
	}
	found := map[string]bool{}
	parser.Inspect(parsed, func(node parser.Node, _ []parser.Node) error {
		if selector, ok := node.(*parser.VectorSelector); ok {
			for _, matcher := range selector.LabelMatchers {
				if matcher.Name == model.MetricNameLabel {
					found[matcher.Value] = true
				}
			}
		}
		return nil
	})
	names := []string{}
	for name := range found {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: promcheck rules FILE | promcheck exprs < exprs.json")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(2)
}
