// Starts GraphiQL against this server's /graphql. It lives in its own file, not inline in the page, so that
// the page's Content-Security-Policy can allow scripts from this server only (script-src 'self').
(function () {
  'use strict';
  var fetcher = GraphiQL.createFetcher({ url: new URL('/graphql', window.location.origin).toString() });
  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
      defaultHeaders: '{\n  "Authorization": "Bearer <your vdk_ token>"\n}',
      defaultQuery: '# Put your API key in the Headers pane below, then run:\n{\n  me { name role }\n}\n',
    })
  );
})();
