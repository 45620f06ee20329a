package testkit

import (
	"errors"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
)

// Constants returns the package-level constants declared in the Go file at
// path, by name. It evaluates the forms a table of protocol constants is
// written in (integer and string literals, unary minus, parentheses, the
// arithmetic operators and shifts over them, and earlier constants by
// name), without type-checking the file: go/types would be built into the
// run for two table tests. Any other form (iota, a conversion, a call) is
// an error that names the constant, so a test over the table fails rather
// than leaving a constant out.
func Constants(path string) (map[string]constant.Value, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		return nil, err
	}
	out := map[string]constant.Value{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			spec := s.(*ast.ValueSpec)
			if len(spec.Values) != len(spec.Names) {
				return nil, errors.New(fset.Position(spec.Pos()).String() + ": " + spec.Names[0].Name + ": a constant without its own value (iota or repetition) is not evaluated; write the value")
			}
			for i, name := range spec.Names {
				v, err := evalConst(spec.Values[i], out)
				if err != nil {
					return nil, errors.New(fset.Position(spec.Values[i].Pos()).String() + ": " + name.Name + ": " + err.Error())
				}
				out[name.Name] = v
			}
		}
	}
	return out, nil
}

func evalConst(e ast.Expr, known map[string]constant.Value) (constant.Value, error) {
	switch e := e.(type) {
	case *ast.BasicLit:
		v := constant.MakeFromLiteral(e.Value, e.Kind, 0)
		if v.Kind() == constant.Unknown {
			return nil, errors.New("bad literal " + e.Value)
		}
		return v, nil
	case *ast.ParenExpr:
		return evalConst(e.X, known)
	case *ast.Ident:
		if v, ok := known[e.Name]; ok {
			return v, nil
		}
		return nil, errors.New("unknown name " + e.Name + " (only constants declared earlier in the file)")
	case *ast.UnaryExpr:
		x, err := evalConst(e.X, known)
		if err != nil {
			return nil, err
		}
		if e.Op != token.SUB && e.Op != token.ADD || x.Kind() != constant.Int {
			return nil, errors.New("unsupported unary " + e.Op.String())
		}
		return constant.UnaryOp(e.Op, x, 0), nil
	case *ast.BinaryExpr:
		x, err := evalConst(e.X, known)
		if err != nil {
			return nil, err
		}
		y, err := evalConst(e.Y, known)
		if err != nil {
			return nil, err
		}
		if x.Kind() != constant.Int || y.Kind() != constant.Int {
			return nil, errors.New("unsupported operands of " + e.Op.String())
		}
		switch e.Op {
		case token.SHL, token.SHR:
			s, ok := constant.Uint64Val(y)
			if !ok || s > 64 {
				return nil, errors.New("bad shift count " + y.ExactString())
			}
			return constant.Shift(x, e.Op, uint(s)), nil
		case token.ADD, token.SUB, token.MUL, token.OR, token.AND:
			return constant.BinaryOp(x, e.Op, y), nil
		}
		return nil, errors.New("unsupported operator " + e.Op.String())
	}
	return nil, errors.New("unsupported expression (a call, a conversion or a qualified name)")
}
