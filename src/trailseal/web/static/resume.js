// A console link opened from another site arrives without the SameSite=Strict session
// cookie. Opening the same address again from this page is a same-site navigation, which
// carries it; without a session, the server then asks to sign in as usual.
(function () {
  "use strict";
  var link = document.getElementById("resume-link");
  if (link) link.href = location.href;
  location.replace(location.href);
})();
