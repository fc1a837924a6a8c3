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

/// Every function an expression may call: arithmetic that cannot panic or hang
/// (evalexpr's `math::abs`, shifts, regular expressions and `random` are left out).
pub const ALLOWED_FUNCTIONS: &[&str] = &[
    "cdiv",
    "min",
    "max",
    "floor",
    "ceil",
    "round",
    "if",
    "math::sqrt",
    "math::ln",
    "math::log",
    "math::log2",
    "math::log10",
    "math::exp",
    "math::exp2",
    "math::pow",
];

/// The longest expression accepted, in characters.
pub const MAX_EXPR_CHARS: usize = 1000;

/// The deepest nesting of parentheses accepted (the parser recurses on each level).
pub const MAX_EXPR_DEPTH: usize = 32;

impl Expr {
    /// Parses `src`; fails with evalexpr's message when the text is not an expression,
    /// and before parsing when it is longer or nests deeper than the limits.
    pub fn parse(src: &str) -> Result<Self, String> {
        if src.chars().count() > MAX_EXPR_CHARS {
            return Err(format!(
                "longer than {MAX_EXPR_CHARS} characters ({})",
                src.chars().count()
            ));
        }
        let mut depth = 0usize;
        let mut deepest = 0usize;
        for c in src.chars() {
            match c {
                '(' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if deepest > MAX_EXPR_DEPTH {
            return Err(format!(
                "parentheses nested {deepest} deep, more than {MAX_EXPR_DEPTH}"
            ));
        }
        let node = build_operator_tree::<DefaultNumericTypes>(src).map_err(|e| e.to_string())?;
        if let Some(f) = node
            .iter_function_identifiers()
            .find(|f| !ALLOWED_FUNCTIONS.contains(f))
        {
            return Err(format!(
                "`{f}` is not a function nightshift expressions may call (they may call: {})",
                ALLOWED_FUNCTIONS.join(", ")
            ));
        }
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
        match self.eval_signals(signals)? {
            Value::Boolean(b) => Ok(b),
            other => Err(format!("`{}` is {other:?}, not true or false", self.src)),
        }
    }

    /// Evaluates to a number over real-valued signals (whole signals are integers, so
    /// `registers * 3 / 4` divides as integers do).
    pub fn eval_number_signals(&self, signals: &Signals) -> Result<Number, String> {
        match self.eval_signals(signals)? {
            Value::Int(i) => Ok(Number::Int(i)),
            Value::Float(f) => Ok(Number::Float(f)),
            other => Err(format!("`{}` is {other:?}, not a number", self.src)),
        }
    }

    fn eval_signals(&self, signals: &Signals) -> Result<Value<DefaultNumericTypes>, String> {
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
        self.node
            .eval_with_context(&ctx)
            .map_err(|e| format!("`{}`: {e}", self.src))
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
            // Checked: an overflow is an error, never a panic.
            a.checked_add(b)
                .and_then(|s| s.checked_sub(1))
                .and_then(|s| s.checked_div_euclid(b))
                .map(Value::Int)
                .ok_or(EvalexprError::DivisionError {
                    dividend: t[0].clone(),
                    divisor: t[1].clone(),
                })
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
    fn cdiv_overflow_and_deep_nesting_are_errors_not_crashes() {
        let e = Expr::parse("cdiv(-9223372036854775806, -1)").unwrap();
        assert!(e.eval_int(&Vars::new()).is_err());
        let e = Expr::parse("cdiv(9223372036854775807, 2)").unwrap();
        assert!(e.eval_int(&Vars::new()).is_err());
        let deep = format!("{}1{}", "(".repeat(50_000), ")".repeat(50_000));
        assert!(Expr::parse(&deep).unwrap_err().contains("longer than"));
        let nested = format!("{}1{}", "(".repeat(40), ")".repeat(40));
        assert!(Expr::parse(&nested).unwrap_err().contains("nested 40 deep"));
        assert!(Expr::parse(&format!("{}1{}", "(".repeat(30), ")".repeat(30))).is_ok());
    }

    #[test]
    fn malformed_expression_is_rejected() {
        assert!(Expr::parse("rows * (cols").is_err());
    }
}

#[cfg(test)]
mod overflow_probe {
    use super::*;

    #[test]
    fn risky_functions_are_refused_at_parse() {
        for f in [
            "math::abs(x)",
            "shl(x, 70)",
            "random()",
            "str::regex_matches(\"a\", \"b\")",
        ] {
            let e = Expr::parse(f).unwrap_err();
            assert!(
                e.contains("not a function nightshift expressions may call"),
                "{f}: {e}"
            );
        }
    }

    #[test]
    fn integer_edges_never_panic() {
        let v: Vars = [
            ("m".to_string(), i64::MIN),
            ("n".to_string(), -1),
            ("b".to_string(), i64::MAX),
        ]
        .into_iter()
        .collect();
        for src in [
            "m / n",
            "m % n",
            "-m",
            "m * n",
            "b + 1",
            "m - 1",
            "b * b",
            "2 ^ 4000",
            "b ^ b",
            "m ^ n",
            "0 ^ n",
            "min(m, n)",
            "cdiv(m, n)",
            "cdiv(b, b)",
            "math::pow(b, b)",
            "b / 0",
            "b % 0",
            "1.0 / 0",
            "floor(1e300)",
            "round(1e300)",
        ] {
            let Ok(e) = Expr::parse(src) else { continue };
            let _ = e.eval_int(&v);
            let _ = e.eval_number(&v);
            let _ = e.eval_bool(&v);
        }
    }
}
