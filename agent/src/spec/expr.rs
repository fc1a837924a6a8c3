//! Expressions in kernel specs (launch geometry, lengths, restrictions, cost model),
//! parsed once with `evalexpr` and evaluated against integer variables.

use std::collections::BTreeMap;

use evalexpr::{
    build_operator_tree, ContextWithMutableFunctions, ContextWithMutableVariables,
    DefaultNumericTypes, EvalexprError, Function, HashMapContext, Node, Value,
};

/// Variables an expression is evaluated against: problem sizes and tunables.
pub type Vars = BTreeMap<String, i64>;

/// Real-valued variables (profile signals, for pattern conditions).
pub type Signals = BTreeMap<String, f64>;

/// A parsed expression with the text it came from, for error messages.
#[derive(Debug, Clone)]
pub struct Expr {
    src: String,
    node: Node<DefaultNumericTypes>,
}

/// The value of an evaluated expression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

/// Functions available in spec expressions besides evalexpr's built-ins.
pub const EXTRA_FUNCTIONS: &[&str] = &["cdiv"];

impl Expr {
    /// Parses `src`; fails with evalexpr's message when the text is not an expression.
    pub fn parse(src: &str) -> Result<Self, String> {
        let node = build_operator_tree::<DefaultNumericTypes>(src).map_err(|e| e.to_string())?;
        Ok(Self {
            src: src.to_string(),
            node,
        })
    }

    pub fn src(&self) -> &str {
        &self.src
    }

    /// Names of the variables the expression reads.
    pub fn variables(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .node
            .iter_variable_identifiers()
            .map(str::to_string)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn eval_value(&self, vars: &Vars) -> Result<Value<DefaultNumericTypes>, String> {
        let ctx = context(vars);
        self.node
            .eval_with_context(&ctx)
            .map_err(|e| format!("`{}`: {e}", self.src))
    }

    /// Evaluates to a number (integer or float).
    pub fn eval_number(&self, vars: &Vars) -> Result<Number, String> {
        match self.eval_value(vars)? {
            Value::Int(i) => Ok(Number::Int(i)),
            Value::Float(f) => Ok(Number::Float(f)),
            other => Err(format!("`{}` is {other:?}, not a number", self.src)),
        }
    }

    /// Evaluates to an integer; a float with a fractional part is an error.
    pub fn eval_int(&self, vars: &Vars) -> Result<i64, String> {
        match self.eval_number(vars)? {
            Number::Int(i) => Ok(i),
            Number::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
            Number::Float(f) => Err(format!("`{}` is {f}, not an integer", self.src)),
        }
    }

    /// Evaluates to a boolean (restrictions).
    pub fn eval_bool(&self, vars: &Vars) -> Result<bool, String> {
        match self.eval_value(vars)? {
            Value::Boolean(b) => Ok(b),
            other => Err(format!("`{}` is {other:?}, not true or false", self.src)),
        }
    }
}

impl Expr {
    /// Evaluates a condition over real-valued signals (integers in the text compare
    /// with them as numbers).
    pub fn eval_bool_signals(&self, signals: &Signals) -> Result<bool, String> {
        let mut ctx = context(&Vars::new());
        for (k, v) in signals {
            // Whole numbers as integers, so that `memory_bound == 1` holds (evalexpr's
            // equality does not equate 1.0 and 1); ordering compares across types.
            let value = if v.fract() == 0.0 && v.abs() < 9.0e15 {
                Value::Int(*v as i64)
            } else {
                Value::Float(*v)
            };
            // Setting a variable on a fresh name cannot fail.
            let _ = ctx.set_value(k.clone(), value);
        }
        match self.node.eval_with_context(&ctx) {
            Ok(Value::Boolean(b)) => Ok(b),
            Ok(other) => Err(format!("`{}` is {other:?}, not true or false", self.src)),
            Err(e) => Err(format!("`{}`: {e}", self.src)),
        }
    }
}

fn context(vars: &Vars) -> HashMapContext<DefaultNumericTypes> {
    let mut ctx = HashMapContext::<DefaultNumericTypes>::new();
    for (k, v) in vars {
        // Setting an integer variable on a fresh context cannot fail.
        let _ = ctx.set_value(k.clone(), Value::Int(*v));
    }
    let _ = ctx.set_function(
        "cdiv".into(),
        Function::new(|arg: &Value<DefaultNumericTypes>| {
            let t = arg.as_fixed_len_tuple(2)?;
            let a = t[0].as_int()?;
            let b = t[1].as_int()?;
            if b == 0 {
                return Err(EvalexprError::DivisionError {
                    dividend: t[0].clone(),
                    divisor: t[1].clone(),
                });
            }
            Ok(Value::Int((a + b - 1).div_euclid(b)))
        }),
    );
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, i64)]) -> Vars {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn integer_arithmetic_is_integer_division() {
        let e = Expr::parse("(rows + BLOCK - 1) / BLOCK").unwrap();
        assert_eq!(
            e.eval_int(&vars(&[("rows", 1000), ("BLOCK", 256)]))
                .unwrap(),
            4
        );
    }

    #[test]
    fn cdiv_rounds_up() {
        let e = Expr::parse("cdiv(rows, 128)").unwrap();
        assert_eq!(e.eval_int(&vars(&[("rows", 257)])).unwrap(), 3);
        assert_eq!(e.eval_int(&vars(&[("rows", 256)])).unwrap(), 2);
    }

    #[test]
    fn restrictions_are_boolean() {
        let e = Expr::parse("cols % VEC == 0 && BLOCK >= 32").unwrap();
        assert!(e
            .eval_bool(&vars(&[("cols", 1024), ("VEC", 4), ("BLOCK", 64)]))
            .unwrap());
        assert!(!e
            .eval_bool(&vars(&[("cols", 1023), ("VEC", 4), ("BLOCK", 64)]))
            .unwrap());
        let err = Expr::parse("cols + 1")
            .unwrap()
            .eval_bool(&vars(&[("cols", 1)]));
        assert!(err.unwrap_err().contains("not true or false"));
    }

    #[test]
    fn unknown_variable_is_an_error_not_a_panic() {
        let e = Expr::parse("rows * colz").unwrap();
        assert_eq!(e.variables(), vec!["colz".to_string(), "rows".to_string()]);
        assert!(e.eval_int(&vars(&[("rows", 2)])).is_err());
    }

    #[test]
    fn division_by_zero_is_an_error() {
        let e = Expr::parse("rows / BLOCK").unwrap();
        assert!(e.eval_int(&vars(&[("rows", 2), ("BLOCK", 0)])).is_err());
        let e = Expr::parse("cdiv(rows, BLOCK)").unwrap();
        assert!(e.eval_int(&vars(&[("rows", 2), ("BLOCK", 0)])).is_err());
    }

    #[test]
    fn overflow_is_an_error() {
        let e = Expr::parse("a * a").unwrap();
        assert!(e.eval_int(&vars(&[("a", i64::MAX / 2)])).is_err());
    }

    #[test]
    fn float_results_convert_only_when_whole() {
        let e = Expr::parse("rows * 0.5").unwrap();
        assert_eq!(e.eval_int(&vars(&[("rows", 4)])).unwrap(), 2);
        assert!(e.eval_int(&vars(&[("rows", 3)])).is_err());
        assert_eq!(e.eval_number(&vars(&[("rows", 3)])).unwrap().as_f64(), 1.5);
    }

    #[test]
    fn malformed_expression_is_rejected() {
        assert!(Expr::parse("rows * (cols").is_err());
    }
}
