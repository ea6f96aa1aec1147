"""emostream live server: `python server.py [options]` is `emostream serve [options]`.

The entry point only: the server lives in stream/server/, its options in stream/cli/.

    python server.py --model-dir ~/models/emotion2vec_plus_large
    python server.py --port 7860 --token SECRET
"""

import sys

from stream.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
