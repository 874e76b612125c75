"""Pure PyTorch recurrent slot taggers: vocabularies, encoders, BIO spans and checkpoint bundles."""
