"""The indad web app: `streamlit run streamlit_app.py` from the repository root (or `indad app`)."""

from indad.app.page import main

main()
