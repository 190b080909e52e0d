//! The classes' number columns, held as one plain struct per row until `finish`: which of a row's numbers
//! exist follows from its kind (an exec has an inode, a fork a child), so a row is one push instead of an
//! Arrow builder call per column, most of them `append_null` (7.7 % of `lake/write_steady`, BENCHMARKS.md).
//! `finish` builds each column in one pass over the rows, its validity from the same rule.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, PrimitiveArray};
use arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow::datatypes::ArrowPrimitiveType;

/// A row of numbers whose `bits` say which of them it has (an exec's inode, a fork's child).
pub(crate) trait Present {
    fn bits(&self) -> u8;
}

/// Whether a row has the numbers of `bit`: the rule a column's validity follows.
pub(crate) fn has<R: Present>(bit: u8) -> impl Fn(&R) -> bool {
    move |r| r.bits() & bit != 0
}

/// The column of `rows` whose row `i` is `value(rows[i])` where `has(rows[i])`, else null.
pub(crate) fn optional<T: ArrowPrimitiveType, R>(
    rows: &[R],
    has: impl Fn(&R) -> bool,
    value: impl Fn(&R) -> T::Native,
) -> ArrayRef {
    Arc::new(optional_array::<T, R>(rows, has, value))
}

/// As `optional`, typed (a timestamp then takes its time zone).
pub(crate) fn optional_array<T: ArrowPrimitiveType, R>(
    rows: &[R],
    has: impl Fn(&R) -> bool,
    value: impl Fn(&R) -> T::Native,
) -> PrimitiveArray<T> {
    let nulls = validity(rows, has);
    // A column no row has (`child_pid` beside execs): its values are never read.
    let values: ScalarBuffer<T::Native> = match &nulls {
        Some(n) if n.null_count() == rows.len() => vec![T::Native::default(); rows.len()].into(),
        _ => rows.iter().map(value).collect(),
    };
    PrimitiveArray::<T>::new(values, nulls)
}

/// As `optional`, for a boolean column.
pub(crate) fn optional_bool<R>(rows: &[R], has: impl Fn(&R) -> bool, value: impl Fn(&R) -> bool) -> ArrayRef {
    let values = BooleanBuffer::collect_bool(rows.len(), |i| value(&rows[i]));
    Arc::new(BooleanArray::new(values, validity(rows, has)))
}

/// Most columns of a file are on every row or on none (a table of execs): each is one pass that stops at
/// the first row that differs, before the bits are built (building them for every column was 4 % of the
/// lake's instructions).
fn validity<R>(rows: &[R], has: impl Fn(&R) -> bool) -> Option<NullBuffer> {
    if rows.iter().all(&has) {
        return None;
    }
    if !rows.iter().any(&has) {
        return Some(NullBuffer::new_null(rows.len()));
    }
    Some(NullBuffer::new(BooleanBuffer::collect_bool(rows.len(), |i| has(&rows[i]))))
}

#[cfg(test)]
#[test]
fn values_and_nulls_follow_the_rule_row_by_row() {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::UInt32Type;
    let rows: Vec<u32> = (0..300).collect();
    let col = optional::<UInt32Type, _>(&rows, |r| r % 3 != 0, |r| r * 2);
    let col = col.as_primitive::<UInt32Type>();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(col.is_valid(i), r % 3 != 0, "row {i}");
        if col.is_valid(i) {
            assert_eq!(col.value(i), r * 2);
        }
    }
    let all = optional::<UInt32Type, _>(&rows, |_| true, |r| *r);
    assert!(all.nulls().is_none(), "no validity when every row has a value");
    let none = optional::<UInt32Type, _>(&rows, |_| false, |r| *r);
    assert_eq!(none.null_count(), rows.len(), "no row has a value");
    let last = optional::<UInt32Type, _>(&rows, |r| *r == 299, |r| *r);
    assert_eq!((last.null_count(), last.as_primitive::<UInt32Type>().value(299)), (299, 299));
    let flags = optional_bool(&rows, |r| r % 2 == 0, |r| r % 4 == 0);
    let flags = flags.as_boolean();
    assert_eq!((flags.null_count(), flags.true_count()), (150, 75));
    assert!(flags.value(4) && !flags.value(2) && flags.is_null(1));
}
