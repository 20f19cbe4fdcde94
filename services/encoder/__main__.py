"""``python -m services.encoder``: run the encoder service with settings from the environment."""

from clipsearch.settings import Settings
from services.encoder.app import serve

if __name__ == "__main__":
    serve(Settings())
