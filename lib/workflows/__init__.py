"""Step Functions definitions (Amazon States Language) as plain Python: pure functions returning
the definition as a dict, so tests check them without synthesizing, and stacks serialize them."""
