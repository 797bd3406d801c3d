"""The models the stages share: ops, the student, the teacher, the corpus, loading a student folder."""
