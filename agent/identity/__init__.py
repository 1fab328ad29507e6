"""Who is asking: identities taken from tokens Keystone vouched for.

:class:`~agent.identity.authenticator.Authenticator` is the first step of
the dispatch boundary. With ``[auth] strategy = keystone`` it replaces the
context a message carries by one built only from what Keystone said about
its tokens (:mod:`agent.identity.keystone`), remembered under a hash of
each token (:mod:`agent.identity.cache`). With ``strategy = trusted`` the
context stands as written, and requests without a token are counted
(:mod:`agent.identity.tokenless`) so that an operator knows when switching
to ``keystone`` refuses nobody.
"""
