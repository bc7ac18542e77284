"""Pages of the Streamlit app (a package, so an unrelated ``pages`` module elsewhere cannot shadow it)."""
