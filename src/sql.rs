//! `jemsafe sql`: the statements that load (or drop) jemsafe_udf.so's functions, from the
//! library's own list of what it exports ([`jemsafe_udf::FUNCTIONS`]).

use jemsafe_udf::{FUNCTIONS, LIBRARY};

/// The SQL script: `CREATE FUNCTION IF NOT EXISTS` for every function (or, with `drop`,
/// `DROP FUNCTION IF EXISTS`), one statement a line. `IF NOT EXISTS` and `IF EXISTS`
/// make it safe to run twice and are understood by MariaDB (10.1.3+) and MySQL (8.0.29+).
pub fn statements(drop: bool) -> String {
    let mut script = format!(
        "-- jemsafe_udf.so's loadable functions: {} them with `jemsafe sql{} | mariadb`\n",
        if drop { "drop" } else { "create" },
        if drop { " --drop" } else { "" },
    );
    for function in FUNCTIONS {
        let statement = if drop {
            format!("DROP FUNCTION IF EXISTS {};\n", function.name)
        } else {
            format!(
                "CREATE FUNCTION IF NOT EXISTS {} RETURNS {} SONAME '{LIBRARY}';\n",
                function.name,
                function.returns.sql()
            )
        };
        script.push_str(&statement);
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_every_function_with_its_type_from_the_library() {
        let script = statements(false);
        assert!(script.contains(
            "CREATE FUNCTION IF NOT EXISTS jeprof_dump RETURNS INTEGER SONAME 'jemsafe_udf.so';\n"
        ));
        assert!(script.contains(
            "CREATE FUNCTION IF NOT EXISTS jemsafe_dump RETURNS STRING SONAME 'jemsafe_udf.so';\n"
        ));
        assert_eq!(script.matches("CREATE FUNCTION").count(), FUNCTIONS.len());
        assert!(!script.contains("DROP"));
    }

    #[test]
    fn drop_drops_every_function_and_creates_none() {
        let script = statements(true);
        assert!(script.contains("DROP FUNCTION IF EXISTS jeprof_active_status;\n"));
        assert_eq!(script.matches("DROP FUNCTION").count(), FUNCTIONS.len());
        assert!(!script.contains("CREATE"));
    }
}
