"""The web app's entry point: ``streamlit run`` runs this file (``indad app`` does it for you)."""

from indad.app.page import main

main()
